"""What Skill-SD costs on a real recipe's shape: step time and peak memory against TRL's `GRPOTrainer` driving the
same rollout function, so the ratio is the overhead a user pays for Skill-SD over plain TRL.

    python bench/recipe_overhead.py --config recipes/sokoban/skill_sd_cpu.yaml --steps 6 --warmup 2 --repeats 3 \
        [--arms grpo_trainer,skill_sd,skill_sd_lambda0] [--skills prefilled|recipe] [--json out.json] [recipe flags]

Arms (``--arms``), each run in a fresh subprocess:

- ``grpo_trainer``: TRL's ``GRPOTrainer`` itself, built by ``build_trainer`` from the same recipe: the same model,
  LoRA and quantization config, ``model_init_kwargs``, dataset rows, reward function and ``MultiTurnRollout``, and a
  ``GRPOConfig`` holding exactly the ``GRPOConfig`` fields of the recipe's ``SkillSDConfig`` as they resolved
  (:func:`grpo_config`). To get there, ``build_trainer`` runs with the recipe's skill source set to ``none`` (so it
  makes no skill bank and no summarizer callback, which GRPO has no use for) and with the class it instantiates
  swapped, for the duration of that one call, for :func:`row_bound_grpo_trainer`'s class. **The glue**: that class
  is ``GRPOTrainer`` with one override, ``_generate_and_score_completions(inputs)``, which sets ``rollout_func`` to
  ``rollout.bind(inputs)`` (a ``BoundRollout``: the rollout plus the batch's rows, which it needs to reset each
  environment and which TRL's ``rollout_func(prompts, trainer)`` does not pass), calls the parent unchanged, and puts
  the rollout back. It adds no work: binding builds one small object per generation batch; the episodes, sampling,
  rewards and loss are the parent's code on the rollout's output. ``SkillSDTrainer`` binds the same rows the same way
  in its ``_generate``.
- ``skill_sd``: ``build_trainer`` on the recipe as a user runs it (the recipe's λ, skill bank, summarizer callback,
  teacher).
- ``skill_sd_lambda0``: the same with ``--sdl_coef 0`` (no teacher; bank and summarizer still run).

``--skills prefilled`` (the default) gives every training task one skill of realistic length (:data:`SKILL`) in the
Skill-SD arms' bank before training, so the teacher scores every row from the first step: the steady state of a run
past its first epoch. ``--skills recipe`` starts from the recipe's bank as it is (empty in the CPU recipes: on
Sokoban's 16 tasks, 2 per step, no task has a skill before step 9, so the teacher scores nothing before then; give a
real run's bank with ``--bank_path`` to start from it). The table says in how many measured steps the teacher scored.

Measurement (as ``bench/overhead.py``; its memory probe is reused):

- Every arm trains ``warmup + steps`` optimizer steps with the recipe's seed, re-seeded right before ``train()`` so
  all arms start training from the same random state (the Skill-SD teacher's set-up draws random numbers). Arms
  alternate within a repeat, in reversed order on odd repeats (A B, B A, ...), so a shared machine's drift hits all
  arms alike; ratios are also reported per repeat (paired).
- Step time: TRL's own ``step_time`` (generation with every turn of every episode, rewards, teacher scoring, forward
  and backward; not the optimizer step or callbacks), the first ``--warmup`` steps dropped, median over the measured
  steps of all repeats. "wall per step" is the time between consecutive ``on_step_end`` callbacks (everything,
  including the optimizer step, logging and the summarizer callback).
- Episodes vary in length (turns, tokens per turn), and once the teacher's gradient moves the policy the arms sample
  different episodes, so the tokens each step sampled are recorded (from ``_generate``'s output: the model's tokens,
  ``env_mask`` 1) and the arms are compared per sampled token too: sum of step times / sum of sampled tokens. The
  fixed-length trick of ``bench/overhead.py`` does not apply to environment episodes. "rollouts equal to
  grpo_trainer up to step k" says until when the arms sampled the same number of tokens.
- Peak memory: peak RSS over trainer set-up and training, relative to the RSS just before the trainer is built
  (Linux high-water mark reset through ``/proc/self/clear_refs``); ``torch.cuda.max_memory_allocated`` on CUDA.
- Breakdown of a step (``bench/step_profile.py``'s :class:`StepParts`, on every arm): sampling (every turn), teacher
  scoring, the student's log-prob pass, backward + optimizer (the rest of the training step), rest of the
  generation batch (rewards, advantages, bookkeeping), as means per measured step.

Prints a Markdown table and writes JSON (``--json``). Not part of the test suite (``tests/test_recipe_overhead.py``
smoke-tests it at tiny scale); run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(BENCH) not in sys.path:  # the sibling scripts, also when this file is loaded by path (the smoke test)
    sys.path.insert(0, str(BENCH))

from overhead import _Memory, _versions
from step_profile import ENVIRONMENT, REMAINDER, SAMPLING, StepParts

BASELINE = "grpo_trainer"
ARMS = {
    "grpo_trainer": "TRL GRPOTrainer",
    "skill_sd": "Skill-SD (recipe's λ)",
    "skill_sd_lambda0": "Skill-SD, λ = 0",
}
#: The standing goal: Skill-SD's step at most 5 % slower than GRPOTrainer's on the same rollouts.
TIME_GOAL = 1.05
SKILL_MODES = ("prefilled", "recipe")

#: The skill every training task gets with ``--skills prefilled``: the size and shape of the experience
#: summarizer's skills in a real Sokoban run (≈ 750 characters; the teacher's prompt grows by what it renders to).
SKILL = {
    "success_analysis": "This episode solved the task in 2 turns with 3 valid actions (reward 1.00). It played the "
                        "shortest plan it could see and checked the board after every move. For contrast, 5 of the 7 "
                        "other episode(s) solved it, with 2-5 actions. A shorter solution exists: prefer the golden "
                        "workflow.",
    "mistake_analysis": "- The agent made an invalid move: 1 time(s), first at turn 1. Read the whole observation "
                        "before acting; an action the environment rejects wastes a turn.\n- Answers outside the "
                        "expected format were not parsed: keep to the action syntax the task states.",
    "golden_workflow": "1. Read the task and the current observation in full. 2. Plan the whole sequence of actions "
                       "before the first one. 3. Act in the task's action format, one plan per turn. 4. After each "
                       "observation, check that the last action did what was planned; if not, re-plan from the new "
                       "state.",
}

#: Breakdown columns: label in the table -> the StepParts label (or a derived one).
TEACHER = "teacher scoring"
STUDENT = "student log-prob pass (forward)"
GENERATION = "generation batch (sampling + scoring)"
REST = "rest of generation batch"
BREAKDOWN = (SAMPLING, TEACHER, STUDENT, REMAINDER, REST, ENVIRONMENT)


# ----------------------------------------------------------------------------------------------------------------
# The GRPOTrainer arm
# ----------------------------------------------------------------------------------------------------------------
_GRPO_CLASS: list = []


def row_bound_grpo_trainer():
    """TRL's ``GRPOTrainer`` plus the one piece of glue a row-aware rollout needs: every generation batch's rows
    bound to the rollout function (see the module docstring). Nothing else is overridden."""
    if not _GRPO_CLASS:
        from trl import GRPOTrainer

        from skill_sd_trl import trl_private

        class RowBoundGRPOTrainer(GRPOTrainer):
            def _generate_and_score_completions(self, inputs):
                rollout = trl_private.rollout_func(self)  # TRL calls rollout_func(prompts, self) in _generate
                with trl_private.rollout_func_swapped(self, rollout.bind(inputs)):
                    return super()._generate_and_score_completions(inputs)

        _GRPO_CLASS.append(RowBoundGRPOTrainer)
    return _GRPO_CLASS[0]


def grpo_config(args):
    """A ``GRPOConfig`` with exactly the ``GRPOConfig`` fields of ``args`` (a ``SkillSDConfig``), as they resolved.

    Copied, not re-initialized (which would re-derive ``generation_batch_size`` and refuse it), as
    ``SkillSDConfig.from_grpo_config`` does the other way round; the Skill-SD fields are left out.
    """
    from dataclasses import fields

    from trl import GRPOConfig

    skill_sd_only = {f.name for f in fields(type(args))} - {f.name for f in fields(GRPOConfig)}
    config = GRPOConfig.__new__(GRPOConfig)
    config.__dict__.update({k: v for k, v in vars(args).items() if k not in skill_sd_only})
    return config


def recipe_args(arm: str, recipe_argv: list[str], total_steps: int, output_dir: str):
    """The recipe's (script, SkillSDConfig, ModelConfig) for ``arm``, with the bench's run settings on top."""
    from skill_sd_trl.cli import parse_train_args

    argv = [*recipe_argv, *(["--sdl_coef", "0"] if arm == "skill_sd_lambda0" else []),
            "--max_steps", str(total_steps), "--output_dir", output_dir, "--save_strategy", "no",
            "--report_to", "none", "--logging_steps", "1", "--eval_strategy", "no"]
    script, args, model_args, _ = parse_train_args(argv)
    if arm == BASELINE:
        script.skill_source = "none"  # no skill bank, no summarizer callback: GRPO reads no skills
    return script, args, model_args


def build(arm: str, script, args, model_args):
    """``build_trainer`` on the recipe; for ``grpo_trainer`` with :func:`row_bound_grpo_trainer` as the class."""
    import skill_sd_trl.method.trainer as trainer_module
    from skill_sd_trl.app.train import build_trainer

    if arm != BASELINE:
        return build_trainer(script, args, model_args)

    def make_grpo_trainer(*, args, skill_provider, **kwargs):  # build_trainer passes everything by keyword
        return row_bound_grpo_trainer()(args=grpo_config(args), **kwargs)

    saved = trainer_module.SkillSDTrainer
    trainer_module.SkillSDTrainer = make_grpo_trainer  # build_trainer imports the class when it is called
    try:
        return build_trainer(script, args, model_args)
    finally:
        trainer_module.SkillSDTrainer = saved


def prefill_skills(trainer, task_id_column: str) -> int:
    """One :data:`SKILL` per training task in the trainer's skill bank; the number of tasks given one."""
    from skill_sd_trl.rollout.prompts import task_id_of
    from skill_sd_trl.skills.schema import Skill

    bank = getattr(trainer, "skill_provider", None)
    if not hasattr(bank, "add"):
        return 0
    tasks = dict.fromkeys(task_id_of(row, task_id_column) for row in trainer.train_dataset)
    for task in tasks:  # under bank_scope 'scenario' a scenario's later tasks find it there already (a duplicate)
        bank.add(Skill(**SKILL, task_id=task, summarizer="bench"))
    return len(tasks)


# ----------------------------------------------------------------------------------------------------------------
# Worker: one arm, one run
# ----------------------------------------------------------------------------------------------------------------
def count_tokens(trainer, generations: list[dict]) -> None:
    """Record, for every training generation batch, the tokens ``_generate`` returned (on the instance)."""
    generate = trainer._generate

    def counted(prompts):
        result = generate(prompts)
        if trainer.model.training:
            prompt_ids, completion_ids, env_mask = result[:3]
            generations.append({
                "step": trainer.state.global_step,
                "completions": len(completion_ids),
                "prompt_tokens": sum(len(ids) for ids in prompt_ids),
                "completion_tokens": sum(len(ids) for ids in completion_ids),  # with the observations
                "sampled_tokens": (sum(sum(mask) for mask in env_mask) if env_mask is not None
                                   else sum(len(ids) for ids in completion_ids)),  # the model's own tokens
            })
        return result

    trainer._generate = counted


def tokens_per_step(generations: list[dict], steps: int, args) -> list[dict]:
    """The tokens of each optimizer step: a generation batch's tokens spread over the steps it feeds."""
    feeds = args.steps_per_generation * args.num_iterations / args.gradient_accumulation_steps
    span = max(1, round(feeds))
    keys = ("completions", "prompt_tokens", "completion_tokens", "sampled_tokens")
    rows = [dict.fromkeys(keys, 0.0) for _ in range(steps)]
    for gen in generations:
        for step in range(gen["step"], min(steps, gen["step"] + span)):
            for key in keys:
                rows[step][key] += gen[key] / span
    return rows


def run_worker(arm: str, recipe_argv: list[str], steps: int, warmup: int, skills: str) -> dict[str, Any]:
    """Build ``arm`` from the recipe, train ``warmup + steps`` steps, return per-step times, tokens, parts, memory."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import torch
    from transformers import TrainerCallback, set_seed

    class StepClock(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.ends = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())

    total = warmup + steps
    with tempfile.TemporaryDirectory(prefix="recipe-overhead-") as out:
        script, args, model_args = recipe_args(arm, recipe_argv, total, out)
        device = "cuda" if torch.cuda.is_available() and not args.use_cpu else "cpu"
        memory = _Memory(device)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        base = memory.reset()
        trainer = build(arm, script, args, model_args)
        prefilled = prefill_skills(trainer, args.task_id_column) if skills == "prefilled" else 0
        sync()
        setup_peak = memory.peak()
        train_start = memory.reset()
        parts = StepParts.install(trainer)
        generations: list[dict] = []
        count_tokens(trainer, generations)
        clock = StepClock()
        trainer.add_callback(clock)  # after the summarizer's: its on_step_end work falls inside the step's wall time
        set_seed(args.seed)  # every arm starts training from the same random state
        trainer.train()
        sync()
        train_peak = memory.peak()

    step_times = [row["step_time"] for row in trainer.state.log_history if "step_time" in row]
    if len(step_times) != total or len(clock.ends) != total + 1:
        raise RuntimeError(f"{arm}: expected {total} steps, logged {len(step_times)} step_time values and "
                           f"{len(clock.ends) - 1} step ends")
    tokens = tokens_per_step(generations, total, args)
    per_step = parts.per_step(total)
    rows = []
    for i in range(total):
        part = per_step[i]
        part[REST] = part[GENERATION] - part[SAMPLING] - part[TEACHER]
        rows.append({"step": i + 1, "warmup": i < warmup, "step_time": step_times[i],
                     "wall": clock.ends[i + 1] - clock.ends[i], **tokens[i], "parts": part})
    model = trainer.model
    return {
        "arm": arm,
        "trainer": type(trainer).__name__,
        "sdl_coef": getattr(args, "sdl_coef", None),
        "has_teacher": getattr(trainer, "teacher", None) is not None,
        "prefilled_skill_tasks": prefilled,
        "steps": rows,
        "device": device,
        "memory_method": memory.method,
        "peak_bytes": max(setup_peak, train_peak) - base,
        "setup_peak_bytes": setup_peak - base,
        "train_peak_bytes": train_peak - train_start,
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


# ----------------------------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------------------------
def launch(options, arm: str, repeat: int) -> dict[str, Any]:
    """One run of ``arm`` in a fresh interpreter (or in this process with ``--in_process``); its result."""
    started = time.perf_counter()
    if options.in_process:
        result = run_worker(arm, options.recipe_argv, options.steps, options.warmup, options.skills)
    else:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
            result_path = Path(handle.name)
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", arm, "--result", str(result_path),
                   "--steps", str(options.steps), "--warmup", str(options.warmup), "--skills", options.skills,
                   *options.recipe_argv]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        try:
            proc = subprocess.run(command, env=env, cwd=os.getcwd(), capture_output=True, text=True,
                                  timeout=options.run_timeout, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"{arm} run {repeat} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
            result = json.loads(result_path.read_text())
        finally:
            result_path.unlink(missing_ok=True)
    result.update(repeat=repeat, wall_s=time.perf_counter() - started)
    return result


def measured(run: dict) -> list[dict]:
    return [row for row in run["steps"] if not row["warmup"]]


def per_token(runs: list[dict]) -> float:
    """Seconds of step time per sampled token over the measured steps of ``runs``."""
    rows = [row for run in runs for row in measured(run)]
    tokens = sum(row["sampled_tokens"] for row in rows)
    return sum(row["step_time"] for row in rows) / tokens if tokens else math.nan


def first_difference(run: dict, base: dict) -> int | None:
    """The first step (1-based, warm-up included) whose sampled tokens differ from ``base``'s; None if none do."""
    for mine, theirs in zip(run["steps"], base["steps"], strict=True):
        if mine["sampled_tokens"] != theirs["sampled_tokens"] or mine["completion_tokens"] != theirs["completion_tokens"]:
            return mine["step"]
    return None


def summarize(runs: list[dict], arms: list[str]) -> dict[str, Any]:
    """Per arm: medians over the measured steps of every repeat, tokens, memory, the step breakdown; for the other
    arms the ratios to ``grpo_trainer`` (from the arms' medians, and paired per repeat)."""
    summary: dict[str, Any] = {}
    for arm in arms:
        mine = sorted((r for r in runs if r["arm"] == arm), key=lambda r: r["repeat"])
        rows = [row for run in mine for row in measured(run)]
        times = [row["step_time"] for row in rows]
        summary[arm] = {
            "runs": len(mine),
            "measured_steps": len(rows),
            "step_time_median": statistics.median(times),
            "step_time_min": min(times),
            "step_time_max": max(times),
            "run_medians": [statistics.median(row["step_time"] for row in measured(run)) for run in mine],
            "wall_median": statistics.median(row["wall"] for row in rows),
            "sampled_tokens_per_step": statistics.fmean(row["sampled_tokens"] for row in rows),
            "sequence_tokens_per_step": statistics.fmean(row["prompt_tokens"] + row["completion_tokens"] for row in rows),
            "seconds_per_sampled_token": per_token(mine),
            "run_seconds_per_sampled_token": [per_token([run]) for run in mine],
            "peak_mib_median": statistics.median(r["peak_bytes"] for r in mine) / 2**20,
            "peak_mib": [r["peak_bytes"] / 2**20 for r in mine],
            "train_peak_mib_median": statistics.median(r["train_peak_bytes"] for r in mine) / 2**20,
            "breakdown_mean": {label: statistics.fmean(row["parts"][label] for row in rows) for label in BREAKDOWN},
            "teacher_steps": sum(row["parts"][TEACHER] > 0 for row in rows),
            "has_teacher": all(r["has_teacher"] for r in mine),
            "prefilled_skill_tasks": mine[0]["prefilled_skill_tasks"],
            "params": mine[0]["params"],
            "trainable_params": mine[0]["trainable_params"],
        }
    if BASELINE in summary:
        base = summary[BASELINE]
        base_runs = {r["repeat"]: r for r in runs if r["arm"] == BASELINE}
        for arm in arms:
            if arm == BASELINE:
                continue
            row = summary[arm]
            mine = sorted((r for r in runs if r["arm"] == arm), key=lambda r: r["repeat"])
            row["time_ratio"] = row["step_time_median"] / base["step_time_median"]
            row["paired_time_ratios"] = [a / b for a, b in zip(row["run_medians"], base["run_medians"], strict=True)]
            row["token_ratio"] = row["seconds_per_sampled_token"] / base["seconds_per_sampled_token"]
            row["paired_token_ratios"] = [a / b for a, b in zip(row["run_seconds_per_sampled_token"],
                                                                 base["run_seconds_per_sampled_token"], strict=True)]
            row["wall_ratio"] = row["wall_median"] / base["wall_median"]
            row["memory_ratio"] = row["peak_mib_median"] / base["peak_mib_median"]
            row["rollouts_differ_from_step"] = [first_difference(r, base_runs[r["repeat"]]) for r in mine]
            row["time_goal_met"] = row["time_ratio"] <= TIME_GOAL
    return summary


def render(summary: dict[str, Any]) -> str:
    """Two Markdown tables: the costs and ratios per arm, and where a measured step's time goes."""
    header = (f"| arm | runs × steps | step time, median [min–max] (s) | wall per step (s) | sampled tokens per step "
              f"| ms per sampled token | peak RSS over pre-trainer (MiB) | × {BASELINE}: step (per repeat) "
              f"| × per token (per repeat) | × memory | teacher scored | rollouts ≠ {BASELINE} from step |")
    lines = [header, "|---" * 12 + "|"]
    for arm, row in summary.items():
        ratio = token = memory = differ = "—"
        if "time_ratio" in row:
            ratio = (f"**{row['time_ratio']:.3f}** {'≤' if row['time_goal_met'] else '>'} {TIME_GOAL} "
                     f"({', '.join(f'{x:.3f}' for x in row['paired_time_ratios'])})")
            token = f"{row['token_ratio']:.3f} ({', '.join(f'{x:.3f}' for x in row['paired_token_ratios'])})"
            memory = f"{row['memory_ratio']:.3f}"
            differ = ", ".join("never" if s is None else str(s) for s in row["rollouts_differ_from_step"])
        teacher = f"{row['teacher_steps']} of {row['measured_steps']}" if row["has_teacher"] else "no teacher"
        lines.append(
            f"| {ARMS[arm]} | {row['runs']} × {row['measured_steps'] // max(row['runs'], 1)} "
            f"| {row['step_time_median']:.3f} [{row['step_time_min']:.3f}–{row['step_time_max']:.3f}] "
            f"| {row['wall_median']:.3f} | {row['sampled_tokens_per_step']:.0f} "
            f"| {1e3 * row['seconds_per_sampled_token']:.2f} | {row['peak_mib_median']:.0f} "
            f"| {ratio} | {token} | {memory} | {teacher} | {differ} |"
        )
    lines += ["", "Mean seconds per measured step (step_profile's parts):", "",
              "| arm | " + " | ".join(BREAKDOWN) + " |", "|---|" + "---|" * len(BREAKDOWN)]
    for arm, row in summary.items():
        lines.append(f"| {ARMS[arm]} | " + " | ".join(f"{row['breakdown_mean'][label]:.3f}" for label in BREAKDOWN)
                     + " |")
    return "\n".join(lines)


def machine(runs: list[dict]) -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return {
        "cpu": model,
        "cpu_capability": runs[0]["cpu_capability"] if runs else None,  # torch's: DEFAULT, AVX2, AVX512, ...
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": runs[0]["torch_threads"] if runs else None,
        "device": runs[0]["device"] if runs else None,
        "memory_method": runs[0]["memory_method"] if runs else None,
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    if options.worker:
        result = run_worker(options.worker, options.recipe_argv, options.steps, options.warmup, options.skills)
        Path(options.result).write_text(json.dumps(result))
        return 0
    load_before = os.getloadavg()
    started = time.perf_counter()
    runs: list[dict] = []
    for repeat in range(options.repeats):
        order = options.arms if repeat % 2 == 0 else options.arms[::-1]  # A B, B A, ...: drift hits both alike
        for arm in order:
            result = launch(options, arm, repeat)
            runs.append(result)
            times = [row["step_time"] for row in measured(result)]
            print(f"[r{repeat}] {ARMS[arm]:<24} step {statistics.median(times):.3f}s  "
                  f"{statistics.fmean(row['sampled_tokens'] for row in measured(result)):.0f} sampled tokens/step  "
                  f"peak {result['peak_bytes'] / 2**20:.0f} MiB  ({result['wall_s']:.0f}s wall)",
                  file=sys.stderr, flush=True)
    summary = summarize(runs, options.arms)
    info = machine(runs)
    print(f"Recipe: {' '.join(options.recipe_argv)}; {options.warmup} warm-up + {options.steps} measured steps, "
          f"{options.repeats} repeat(s), skills: {options.skills}.")
    print(f"Machine: {info['cpu']} (torch CPU capability {info['cpu_capability']}), {info['usable_cores']} of "
          f"{info['cores']} cores usable, {info['torch_threads']} torch threads, device {info['device']}; "
          f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after.\n")
    print(render(summary))
    if options.in_process:
        print("\n(--in_process: every run shared one process; the memory figures are not comparable.)")
    if options.json:
        meta = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "recipe_argv": options.recipe_argv,
                "steps": options.steps, "warmup": options.warmup, "repeats": options.repeats, "arms": options.arms,
                "skills": options.skills, "in_process": options.in_process, "machine": info,
                "versions": _versions(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
                "total_wall_s": time.perf_counter() - started, "time_goal": TIME_GOAL}
        Path(options.json).write_text(json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=2))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], allow_abbrev=False,
        epilog="Every other flag (--config and any recipe flag) is the recipe's, as for `skill-sd-trl train`; the bench "
               "sets max_steps, output_dir, save_strategy, report_to, logging_steps and eval_strategy itself.")
    parser.add_argument("--steps", type=int, default=6, help="measured optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="steps trained first and not measured")
    parser.add_argument("--repeats", type=int, default=3, help="runs per arm, arms alternating")
    parser.add_argument("--arms", default=f"{BASELINE},skill_sd",
                        help=f"comma-separated, from: {', '.join(ARMS)}; {BASELINE} is required")
    parser.add_argument("--skills", choices=SKILL_MODES, default="prefilled",
                        help="prefilled: every training task has a skill from step 1; recipe: the recipe's bank as is")
    parser.add_argument("--run_timeout", type=int, default=3600, help="seconds before one run is abandoned")
    parser.add_argument("--json", help="write runs, summary and machine details to this file")
    parser.add_argument("--in_process", action="store_true",
                        help="run every arm in this process (smoke tests only: peak memory is then not comparable)")
    parser.add_argument("--worker", choices=tuple(ARMS), help=argparse.SUPPRESS)  # internal: one run
    parser.add_argument("--result", help=argparse.SUPPRESS)
    options, recipe_argv = parser.parse_known_args(argv)
    options.recipe_argv = recipe_argv
    options.arms = [a.strip() for a in options.arms.split(",") if a.strip()]
    unknown = [a for a in options.arms if a not in ARMS]
    if unknown:
        parser.error(f"--arms: unknown {unknown}; choose from {', '.join(ARMS)}")
    if BASELINE not in options.arms:
        parser.error(f"--arms must include {BASELINE}: every ratio is relative to it")
    if min(options.steps, options.repeats) < 1 or options.warmup < 0:
        parser.error("--steps and --repeats must be ≥ 1, --warmup ≥ 0")
    if "--config" not in recipe_argv and not options.worker:
        parser.error("give the recipe: --config recipes/<env>/<recipe>.yaml")
    return options


if __name__ == "__main__":
    sys.exit(main())
