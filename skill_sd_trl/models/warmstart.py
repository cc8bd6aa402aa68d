"""Calibrated base models: a short supervised warm start, so that RL starts where the paper's base model does.

The paper's base model (Qwen3-4B-Instruct) already solves 12.5 % of its Sokoban test levels; SmolLM2-135M-Instruct
solves none and never writes the answer format, so GRPO sees no reward variance and learns nothing. A warm start
gives the CPU experiments the same kind of start: TRL's ``SFTTrainer`` fine-tunes a LoRA on optimal-solver
demonstrations (``<answer>Up || Left</answer>``) for a few steps, and the merged model becomes a plain model folder.

A warm start can also teach the model to *read a teacher context* (``context_kinds``): some demonstrations then
carry, in the system message, what Skill-SD's teacher is shown in RL: a skill written by the real experience
summarizer from an episode that played the level's solution, or the level's reference solution (vanilla OPD's
ground truth), rendered by the trainer's default templates. The paper's 4B instruct model reads such a context
unprompted; the 135M model does not (docs/benchmarks.md), so without this its teacher has nothing to distil. The
student still acts with the plain prompt in RL: the plain demonstrations keep that behaviour.

The demonstrations are the environment's own (``EnvSpec.demonstrations``): tasks drawn from task sets disjoint from
every RL train and test task of the excluded task-set seeds (Sokoban: boards from their own generator namespace,
every board of the CPU presets' level sets dropped), each with the answer that solves it. The environment's skill
for a demonstration is written as in RL: the real environment plays the answer and the real experience summarizer
writes the skill.

A warm start is addressed by an alias (``smollm2-135m-sokoban-base``) wherever a model name is accepted: the first
use builds it (deterministic from its seed; ≈ minutes on 2 CPU cores, progress shown), atomically and under an
inter-process lock, into ``cache_root()/<alias>-<key>``, where ``key`` fingerprints the recipe below and the base
model folder. Pre-build from a shell with ``python -m skill_sd_trl.models.warmstart smollm2-135m-sokoban-base``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

#: Bump when the warm-start procedure changes: the cache key changes with it.
WARM_START_FORMAT = 3
WARM_START_INFO = "warm_start.json"
#: What a demonstration's prompt may hold besides the task: nothing, a skill, or the reference solution.
CONTEXT_KINDS = ("none", "skill", "ground_truth")


@dataclass(frozen=True)
class WarmStart:
    """A recipe for a calibrated base: which model, which demonstrations, how much supervised training.

    Attributes:
        alias: the name recipes use for the result.
        base: the model it starts from (an embedded alias, a Hub id or a folder).
        env / env_args: the environment whose demonstrations it learns from, with the RL recipes' own options
            (their prompt); ``env_args`` must not pick a task set, the demonstrations bring their own.
        num_demonstrations: distinct demonstration tasks.
        max_steps / batch_size / learning_rate: the SFT run.
        lora_r / lora_alpha / lora_target_modules: the LoRA that is trained, then merged.
        exclude_task_sets: task-set seeds none of whose train or test tasks is ever a demonstration (every seed the
            RL recipes and experiments train or evaluate on).
        seed: the demonstrations' and the SFT's seed (which tasks, data order, LoRA init).
        context_kinds: what the prompt of demonstration ``i`` holds besides the task, cycling through the tuple
            (``("none", "skill")``: every other one a skill); empty means plain prompts only. See the module docstring.
        max_length: the SFT's token limit per demonstration (``None``: TRL's default, 1024); long prompts and answers
            (the app world's code) need more, or the answer's end is cut off.
    """

    alias: str
    base: str
    env: str = "sokoban"
    env_args: dict[str, Any] = field(default_factory=lambda: {"preset": "small", "prompt_style": "compact",
                                                              "reward_mode": "success", "lenient_actions": True})
    num_demonstrations: int = 256
    max_steps: int = 12
    batch_size: int = 8
    learning_rate: float = 3e-4
    lora_r: int = 16
    lora_alpha: int = 32
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    exclude_task_sets: tuple[int, ...] = tuple(range(10))
    seed: int = 0
    context_kinds: tuple[str, ...] = ()
    max_length: int | None = None

    def __post_init__(self) -> None:
        unknown = [k for k in self.context_kinds if k not in CONTEXT_KINDS]
        if unknown:
            raise ValueError(f"WarmStart.context_kinds has {unknown}; use entries of {CONTEXT_KINDS}.")

    def environment(self):
        """The environment the demonstrations come from (its spec, with ``env_args``)."""
        from ..envs.registry import load_environment

        spec = load_environment(self.env, self.env_args)
        if spec.demonstrations is None:
            raise ValueError(f"WarmStart {self.alias!r}: environment {self.env!r} has no demonstrations "
                             "(EnvSpec.demonstrations); a warm start needs tasks with reference answers.")
        return spec

    def key(self, base_path: str) -> str:
        """Fingerprint of the recipe, the procedure and the base folder (a re-converted base gets a new key)."""
        recipe = asdict(self)
        for name in ("context_kinds", "max_length"):  # unused options leave the keys of earlier warm starts as they were
            if not recipe[name]:
                del recipe[name]
        payload = json.dumps({"format": WARM_START_FORMAT, "recipe": recipe, "base": Path(base_path).name},
                             sort_keys=True, default=list)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]


# The offline app world (compact prompt, 8 of 24 templates held out): reference solutions of the 16 trained templates,
# each on a world of its own (never an RL train or dev world), as one code turn. 64 demonstrations and 16 steps on the
# attention projections left it at 0 % of the dev tasks, not even writing the code fence (it copied the prompt's API
# list); twice the demonstrations and steps, a higher rate and the MLP too.
_APPWORLD_BASE = WarmStart(alias="smollm2-135m-appworld-base", base="smollm2-135m-instruct", env="appworld_offline",
                           env_args={"prompt_style": "compact", "held_out_templates": 8},
                           num_demonstrations=128, max_steps=32, batch_size=4, learning_rate=5e-4,
                           lora_target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                "down_proj"),
                           max_length=1280)

WARM_STARTS: dict[str, WarmStart] = {
    "smollm2-135m-sokoban-base": WarmStart(alias="smollm2-135m-sokoban-base", base="smollm2-135m-instruct"),
    # Half the demonstrations also hold a teacher context (a skill or the reference solution); twice the steps, so
    # the plain half is seen as often as the plain base's demonstrations are.
    "smollm2-135m-sokoban-base-ctx": WarmStart(alias="smollm2-135m-sokoban-base-ctx", base="smollm2-135m-instruct",
                                               max_steps=24, context_kinds=("none", "skill", "none", "ground_truth")),
    _APPWORLD_BASE.alias: _APPWORLD_BASE,
    # Twice the demonstrations and steps (one epoch each): the base above solves 6 % of the dev tasks greedily but
    # none of 64 training episodes sampled at temperature 1, and at 0.7 only 2 of 16 groups of 4 have a spread of
    # Comp., so GRPO has almost no signal from it (docs/benchmarks.md).
    "smollm2-135m-appworld-base-256": replace(_APPWORLD_BASE, alias="smollm2-135m-appworld-base-256",
                                              num_demonstrations=256, max_steps=64),
}


def resolve_alias(name: str) -> str | None:
    """The built folder of a registered warm-start alias (built on first use); ``None`` for other names."""
    spec = WARM_STARTS.get(name)
    return None if spec is None else resolve_warm_start(spec)


def resolve_warm_start(spec: WarmStart) -> str:
    """The folder of ``spec``'s calibrated base, built once (see the module docstring)."""
    from . import resolve_model
    from .embedded import MARKER_FILE, build_once, cache_root

    base_path = resolve_model(spec.base)
    target = cache_root() / f"{spec.alias}-{spec.key(base_path)}"
    if (target / MARKER_FILE).is_file():
        return str(target)
    return str(build_once(target, lambda tmp: build_warm_start(spec, base_path, tmp), f"The warm start {spec.alias!r}"))


def demonstration_rows(spec: WarmStart) -> list[dict[str, Any]]:
    """The environment's ``spec.num_demonstrations`` demonstration tasks (rows with ``prompt`` and ``answer``)."""
    return spec.environment().demonstrations(spec.num_demonstrations, spec.seed, spec.exclude_task_sets)


def solved_skill(env_spec, row: dict[str, Any]) -> str:
    """The skill text Skill-SD's teacher is shown for a task once an episode has solved it."""
    return solved_skill_entry(env_spec, row).to_text()


def solved_skill_entry(env_spec, row: dict[str, Any], task_id: str = "warmstart"):
    """The :class:`Skill` of an episode that solved the row's task: the real environment plays the row's answer in
    one turn and the real experience summarizer writes the skill."""
    from ..skills.schema import parse_skill
    from ..skills.summarizers import ExperienceSummarizer
    from ..skills.trajectory import Trajectory, Turn

    env = env_spec.make_env()
    env.reset(row)
    result = env.step(row["answer"])
    score = env.score()
    env.close()
    if not score.success:
        raise RuntimeError(f"The answer of a demonstration did not solve it ({result.observation!r}).")
    trajectory = Trajectory(task_id=task_id, env_name=env_spec.name, task="", reward=float(result.reward),
                            turns=[Turn(row["answer"], result.observation, result.valid, dict(result.info))],
                            success=True, completion=float(score.completion), stop_reason=result.stop_reason or "done")
    text = ExperienceSummarizer(events={env_spec.name: env_spec.events}).summarize([trajectory], focus=trajectory)
    return parse_skill(text, task_id=task_id, reward=trajectory.reward, step=0, summarizer="experience")


def demonstration_prompt(env_spec, row: dict[str, Any], kind: str):
    """The RL prompt of a demonstration, with the teacher context of ``kind`` rendered in as the trainer renders it
    (its default templates, in the system message)."""
    from ..method.config import DEFAULT_GROUND_TRUTH_TEMPLATE, DEFAULT_SKILL_TEMPLATE
    from ..rollout.prompts import add_context_to_prompt

    if kind == "none":
        return row["prompt"]
    if kind == "skill":
        return add_context_to_prompt(row["prompt"], solved_skill(env_spec, row), DEFAULT_SKILL_TEMPLATE)
    # the dataset's ground_truth column, as vanilla OPD's teacher reads it
    return add_context_to_prompt(row["prompt"], row["ground_truth"], DEFAULT_GROUND_TRUTH_TEMPLATE)


def demonstrations(spec: WarmStart):
    """The SFT dataset: conversational prompt (the RL prompt, with a teacher context where ``spec.context_kinds``
    puts one) and the answer as the completion."""
    from datasets import Dataset

    env_spec = spec.environment()
    kinds = spec.context_kinds or ("none",)
    rows = [{"prompt": demonstration_prompt(env_spec, row, kinds[i % len(kinds)]),
             "completion": [{"role": "assistant", "content": row["answer"]}]}
            for i, row in enumerate(demonstration_rows(spec))]
    return Dataset.from_list(rows)


def build_warm_start(spec: WarmStart, base_path: str, out_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """Fine-tune ``base_path`` on ``spec``'s demonstrations with TRL's ``SFTTrainer``, merge the LoRA and save a plain
    model folder (with its tokenizer) in ``out_dir``; the marker file is written last. Returns the run's record."""
    import tempfile

    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from .embedded import MARKER_FILE

    out_dir = Path(out_dir)
    print(f"skill_sd_trl: building the calibrated base {spec.alias!r} from {spec.base!r} ({spec.max_steps} SFT steps "
          f"of {spec.batch_size} demonstrations, once)", file=sys.stderr, flush=True)
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    with tempfile.TemporaryDirectory() as scratch:
        args = SFTConfig(
            output_dir=scratch, max_steps=spec.max_steps, per_device_train_batch_size=spec.batch_size,
            learning_rate=spec.learning_rate, lr_scheduler_type="constant", seed=spec.seed, data_seed=spec.seed,
            use_cpu=not torch.cuda.is_available(), bf16=False, report_to=[], save_strategy="no", logging_steps=1,
            disable_tqdm=not progress, **({"max_length": spec.max_length} if spec.max_length else {}),
        )
        peft_config = LoraConfig(r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=0.0,
                                 target_modules=list(spec.lora_target_modules), task_type="CAUSAL_LM")
        trainer = SFTTrainer(model=model, args=args, train_dataset=demonstrations(spec), processing_class=tokenizer,
                             peft_config=peft_config)
        trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        merged = trainer.model.merge_and_unload()
    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    if getattr(merged, "generation_config", None) is not None:
        merged.generation_config.save_pretrained(out_dir)
    record = {"alias": spec.alias, "base": spec.base, "base_path": str(base_path), "recipe": asdict(spec),
              "format": WARM_START_FORMAT, "losses": losses, "seconds": round(time.perf_counter() - start, 1)}
    (out_dir / WARM_START_INFO).write_text(json.dumps(record, indent=2, default=list), encoding="utf-8")
    (out_dir / MARKER_FILE).write_text(json.dumps({"warm_start": spec.alias}), encoding="utf-8")  # last: complete
    print(f"skill_sd_trl: {spec.alias!r} built in {record['seconds']:.0f} s (SFT loss {losses[0]:.3f} -> "
          f"{losses[-1]:.3f})", file=sys.stderr, flush=True)
    return record


def main(argv: list[str] | None = None) -> int:
    """``python -m skill_sd_trl.models.warmstart ALIAS``: build (or find) a calibrated base and print its folder."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1 or argv[0] not in WARM_STARTS:
        print(f"usage: python -m skill_sd_trl.models.warmstart {{{','.join(WARM_STARTS)}}}", file=sys.stderr)
        return 2
    print(resolve_warm_start(WARM_STARTS[argv[0]]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
