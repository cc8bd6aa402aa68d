"""Calibrated base models: demonstrations disjoint from RL levels, a real SFT run, built once, atomically."""

import json

import pytest
import torch
from safetensors.torch import load_file

from skill_sd_trl import models
from skill_sd_trl.models import warmstart
from skill_sd_trl.envs.sokoban.dataset import PRESETS, level_pool
from skill_sd_trl.envs.sokoban.level import Level
from skill_sd_trl.envs.sokoban.render import parse_actions
from skill_sd_trl.envs.sokoban.rules import apply_moves
from skill_sd_trl.envs.sokoban.solver import solve
from skill_sd_trl.models.warmstart import WarmStart, demonstration_rows, demonstrations

TINY = {"preset": "tiny", "prompt_style": "compact", "reward_mode": "success", "lenient_actions": True}


def _spec(base, **overrides):
    kw = dict(alias="tiny-sokoban-base", base=base, env_args=TINY, num_demonstrations=12, max_steps=3,
              batch_size=4, learning_rate=1e-2, lora_r=4, lora_alpha=8, lora_target_modules=("q_proj", "v_proj"),
              exclude_task_sets=(0, 1, 2))
    kw.update(overrides)
    return WarmStart(**kw)


def demonstration_levels(spec):
    """The levels of a warm start's demonstrations (each row holds its board as XSB)."""
    return [Level.from_xsb(row["level"]) for row in demonstration_rows(spec)]


def test_demonstrations_never_show_an_rl_level_and_are_optimal_and_reproducible(tiny_model_path):
    spec = _spec(tiny_model_path, num_demonstrations=24)
    levels = demonstration_levels(spec)
    assert len(levels) == 24 and len(set(levels)) == 24
    for seed in spec.exclude_task_sets:  # the demonstration preset's own level sets, and the CPU presets'
        train, test = level_pool(PRESETS["tiny"], seed)
        assert not set(levels) & (set(train) | set(test))
    assert demonstration_levels(spec) == levels  # deterministic from the seed
    assert demonstration_levels(_spec(tiny_model_path, num_demonstrations=24, seed=1)) != levels
    rows = demonstrations(spec)
    for row, level in zip(rows, levels):
        answer = row["completion"][0]["content"]
        assert answer.startswith("<answer>") and answer.endswith("</answer>")
        moves = parse_actions(answer)
        assert len(moves) == len(solve(level)) and apply_moves(level, moves).is_solved  # optimal, and it solves
        assert row["prompt"][0]["content"].startswith("Sokoban. Push every box")  # the compact RL prompt


def test_the_registered_base_never_saw_a_cpu_experiment_level():
    spec = warmstart.WARM_STARTS["smollm2-135m-sokoban-base"]
    assert spec.env == "sokoban" and set(range(10)) <= set(spec.exclude_task_sets)
    levels = set(demonstration_levels(spec))
    assert len(levels) == spec.num_demonstrations
    for preset in ("small", "short"):
        for seed in range(10):
            train, test = level_pool(PRESETS[preset], seed)
            assert not levels & (set(train) | set(test)), (preset, seed)


def test_alias_builds_once_atomically_and_trains_the_weights(tiny_model_path, tmp_path, monkeypatch):
    monkeypatch.setenv(models.CACHE_ENV_VAR, str(tmp_path / "cache"))
    spec = _spec(tiny_model_path)
    monkeypatch.setitem(warmstart.WARM_STARTS, spec.alias, spec)

    path = models.resolve_model(spec.alias)
    info = json.loads((tmp_path / "cache" / path.split("/")[-1] / warmstart.WARM_START_INFO).read_text())
    assert len(info["losses"]) == 3 and info["losses"][-1] < info["losses"][0]  # the SFT run learned something
    trained, base = load_file(f"{path}/model.safetensors"), load_file(f"{tiny_model_path}/model.safetensors")
    changed = [k for k in base if not torch.equal(base[k], trained[k])]
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)  # the merged LoRA, nothing else

    def no_rebuild(*args, **kwargs):
        raise AssertionError("built twice")

    monkeypatch.setattr(warmstart, "build_warm_start", no_rebuild)
    assert models.resolve_model(spec.alias) == path  # cached: found, not rebuilt

    # a crash mid-build leaves nothing that looks finished, and the next call builds again
    failing = _spec(tiny_model_path, seed=7)
    monkeypatch.setitem(warmstart.WARM_STARTS, failing.alias, failing)
    with pytest.raises(AssertionError, match="built twice"):
        models.resolve_model(failing.alias)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")) == [path.split("/")[-1]]


def test_context_demonstrations_show_the_teacher_what_rl_shows_it(tiny_model_path):
    from skill_sd_trl.envs.sokoban.dataset import build_prompt

    spec = _spec(tiny_model_path, num_demonstrations=6, context_kinds=("none", "skill", "ground_truth"))
    levels, rows = demonstration_levels(spec), demonstrations(spec)
    preset = PRESETS["tiny"]
    assert len(rows) == 6
    for i, (row, level) in enumerate(zip(rows, levels)):
        plain = build_prompt(level, preset.max_steps, spec.env_args["prompt_style"])
        answer = row["completion"][0]["content"]
        assert row["prompt"][1:] == plain[1:]  # the task itself is the RL prompt's
        system = row["prompt"][0]["content"]
        assert system.startswith(plain[0]["content"])
        extra = system[len(plain[0]["content"]):]
        if i % 3 == 0:
            assert extra == ""
        elif i % 3 == 1:  # the experience summarizer's skill of an episode that played the solution
            assert "<skill>" in extra and "### Golden workflow" in extra
            assert extra.rstrip().endswith(answer + "\n</skill>")
            assert f"solved the task with {len(solve(level))} actions in 1 turns" in extra
        else:  # the dataset's ground_truth column, in the default template
            assert extra.endswith(f"<reference>\n{answer[len('<answer>'):-len('</answer>')]}\n</reference>")
    # a plain warm start keeps its cache key; a context warm start gets its own
    assert _spec(tiny_model_path).key("base") != spec.key("base")
    assert _spec(tiny_model_path).key("base") == _spec(tiny_model_path, context_kinds=()).key("base")
    with pytest.raises(ValueError, match=r"context_kinds has \['hint'\]"):
        _spec(tiny_model_path, context_kinds=("none", "hint"))


def test_an_environment_without_demonstrations_cannot_be_warm_started(tiny_model_path):
    spec = _spec(tiny_model_path, env="appworld", env_args={})  # the real AppWorld: no reference solutions here
    with pytest.raises(ValueError, match="environment 'appworld' has no demonstrations"):
        demonstration_rows(spec)


def test_the_context_base_sees_its_plain_prompts_as_often_as_the_plain_base():
    plain, ctx = warmstart.WARM_STARTS["smollm2-135m-sokoban-base"], warmstart.WARM_STARTS["smollm2-135m-sokoban-base-ctx"]
    share = ctx.context_kinds.count("none") / len(ctx.context_kinds)
    assert ctx.max_steps * ctx.batch_size * share == plain.max_steps * plain.batch_size
    assert {k: v for k, v in vars(ctx).items() if k not in ("alias", "max_steps", "context_kinds")} == \
        {k: v for k, v in vars(plain).items() if k not in ("alias", "max_steps", "context_kinds")}
