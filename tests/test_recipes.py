"""Every recipe parses into the three dataclasses; every CPU recipe trains one step with a tiny model substituted."""

import json
from pathlib import Path

import pytest
import yaml

from skill_sd_trl.app.methods import METHOD_OPTIONS, METHODS, identify, with_method
from skill_sd_trl.cli import main, parse_train_args

RECIPES = sorted(Path(__file__).resolve().parent.parent.joinpath("recipes").glob("*/*.yaml"))
TRAIN_RECIPES = [r for r in RECIPES if r.parent.name != "accelerate"]
# Every Sokoban CPU recipe, plus Skill-SD on the offline app world and on "real" AppWorld, whose client talks to the
# offline server here (the same HTTP protocol as `appworld serve environment`).
CPU_RECIPES = [r for r in TRAIN_RECIPES if r.stem.endswith("_cpu") and r.parent.name == "sokoban"] + [
    r for r in TRAIN_RECIPES if r.stem == "skill_sd_cpu" and r.parent.name in ("appworld_offline", "appworld")
]


@pytest.fixture(scope="module")
def appworld_servers():
    """Four servers: like real AppWorld servers, the client runs one episode per server at a time."""
    import contextlib

    from skill_sd_trl.envs.appworld.offline.server import OfflineAppWorldServer

    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(OfflineAppWorldServer()).url for _ in range(4)]


def test_recipe_matrix_is_complete():
    """Every environment has a recipe per method (named after it) and the base-model evaluation, at both scales."""
    names = set(METHODS) | {"base_eval"}
    for env in ("sokoban", "appworld_offline", "appworld"):
        found = {p.stem for p in TRAIN_RECIPES if p.parent.name == env}
        assert found == names | {f"{m}_cpu" for m in names}, env


@pytest.mark.parametrize("recipe", TRAIN_RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_recipe_parses_and_states_its_launch_command(recipe):
    raw = yaml.safe_load(recipe.read_text())
    # GPU recipes ask for bf16, which TrainingArguments refuses on a CPU-only machine: parse them CPU-side here.
    cpu_overrides = [] if raw.get("use_cpu") else ["--bf16", "false", "--use_cpu", "true", "--use_vllm", "false"]
    script, args, model_args, path = parse_train_args(["--config", str(recipe), *cpu_overrides])
    assert path == str(recipe)
    assert script.env_name == recipe.parent.name
    header = recipe.read_text().splitlines()[:5]
    assert any(line.startswith("# Launch:") and str(recipe.relative_to(recipe.parent.parent.parent)) in line
               for line in header)
    name = recipe.stem.removesuffix("_cpu")
    # the recipe names its method (the base evaluation trains nothing: plain GRPO's options) and runs exactly it
    method = METHODS["grpo" if name == "base_eval" else name]
    assert raw["method"] == method.name and script.method == method.name
    for option, value in method.options.items():
        if option == "use_vllm" and not raw.get("use_cpu"):
            continue  # overridden above for the CPU-side parse
        assert (getattr(script, option) if hasattr(script, option) else getattr(args, option)) == value, option
    assert not set(raw) & set(METHOD_OPTIONS), "a recipe states its method, not the method's options"
    assert identify(script, args) == (method, {})
    assert script.eval_only == (name == "base_eval")
    if recipe.stem.endswith("_cpu") and recipe.parent.name == "sokoban":
        # the calibrated base and the compact prompt it was warm-started on
        assert model_args.model_name_or_path == "smollm2-135m-sokoban-base" and args.use_cpu
        assert script.env_args["prompt_style"] == "compact"
    elif recipe.stem.endswith("_cpu"):
        assert model_args.model_name_or_path == "smollm2-135m-instruct" and args.use_cpu
    else:
        assert model_args.model_name_or_path == "Qwen/Qwen3-4B-Instruct-2507" and model_args.use_peft
        assert raw["bf16"] is True and with_method(raw)["use_vllm"] is (args.rollout_policy != "teacher")


def _tasks_per_step(recipe) -> int:
    data = yaml.safe_load(recipe.read_text())
    return max(1, data.get("per_device_train_batch_size", 8) // data.get("num_generations", 8))


@pytest.mark.parametrize("recipe", CPU_RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_cpu_recipe_runs_one_step_with_tiny_model(recipe, tmp_path, request):
    out = tmp_path / "run"
    extra = []
    if recipe.parent.name == "appworld":
        extra = ["--env_args", json.dumps({"server_url": ",".join(request.getfixturevalue("appworld_servers"))})]
    # two steps on the tasks of one step (the recipe's own batch shape), waiting for step 1's skills: step 2's
    # teacher is conditioned on them
    code = main(["train", "--config", str(recipe), "--tiny_model", "true", "--output_dir", str(out), "--max_steps", "2",
                 "--max_eval_samples", "2", "--max_train_samples", str(_tasks_per_step(recipe)), "--max_turns", "2",
                 "--max_new_tokens_per_turn", "4", "--summarizer_wait", "30", *extra])
    assert code == 0
    results = json.loads((out / "eval_results.json").read_text())
    rows = results["table"]
    if recipe.stem.startswith("base_eval"):
        assert [r["model"] for r in rows] == ["base model"]
        assert not (out / "trainer_state.json").exists()
        return
    assert [r["model"] for r in rows][0] == "base model" and len(rows) == 2
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert (out / "recipe.yaml").read_text() == recipe.read_text()
    assert (out / "README.md").exists() and "Skill-SD training" in (out / "README.md").read_text()
    assert (out / "adapter_model.safetensors").exists()
    logged = {k for h in state["log_history"] for k in h}
    assert f"env/{recipe.parent.name}/acc" in logged
    if "skill_sd" in recipe.stem or "ablation" in recipe.stem:
        assert "self_distillation/sdl" in logged and (out / "skill_bank.json").exists()


def test_unknown_recipe_key_and_missing_file_are_clear(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("env_name: sokoban\nsdl_coeff: 0.1\n")
    with pytest.raises(SystemExit, match="unknown recipe key 'sdl_coeff'.*Did you mean 'sdl_coef'"):
        parse_train_args(["--config", str(bad)])
    with pytest.raises(SystemExit, match="not found"):
        parse_train_args(["--config", str(tmp_path / "nope.yaml")])
    unknown_env = tmp_path / "env.yaml"
    unknown_env.write_text("env_name: chess\n")
    with pytest.raises(SystemExit, match="^error: env_name='chess' is not an installed environment. Installed "
                                         r"\(entry-point group skill_sd_trl.environments\): appworld, appworld_offline, "
                                         "sokoban; or give module:function.$"):
        parse_train_args(["--config", str(unknown_env)])  # one line, no traceback
