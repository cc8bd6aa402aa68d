"""Overhead of `SkillSDTrainer` over TRL's `GRPOTrainer`: step time and peak memory, same configuration, LoRA.

Design (why it looks like this):

- One **fresh subprocess per measured run**. Peak memory is a high-water mark: measured in one long-lived process,
  the first trainer's peak would hide the second's. A fresh process per (model, trainer, repeat) starts every run
  from the same state, and its result comes back as JSON.
- Trainers run **alternately** (GRPO, Skill-SD, [Skill-SD λ=0,] GRPO, Skill-SD, ...), so slow drift of a shared
  machine (other jobs starting or stopping) hits both trainers alike; ratios are also reported per repeat (paired).
- Step time is TRL's own ``step_time`` metric (logged every step; it covers generation, reward, the teacher forward
  and forward/backward, and excludes set-up). The first ``--warmup`` steps are dropped (allocator and kernel
  warm-up). Per-step breakdown: time inside ``_generate`` (sampling) and, for Skill-SD, inside ``_teacher_logps``
  (the extra no-grad teacher forward), measured by wrapping those two methods on the instance — library code is
  unchanged.
- Memory. CPU: peak RSS over trainer set-up + training, relative to the RSS just before the trainer is built (the
  Linux high-water mark is reset through ``/proc/self/clear_refs``), so it counts the model weights, both adapters,
  optimizer state, activations and generation caches — and not the Python/torch imports. CUDA:
  ``torch.cuda.max_memory_allocated`` with the peak statistics reset at the same point. A train-phase-only peak
  (over ``train()``, relative to its start) is reported too.
- Generation length is fixed (``min_new_tokens = max_completion_length``), so every run samples exactly as many
  tokens and step times are comparable. Every row carries a skill, so the teacher forward runs at every step.

Run ``python bench/overhead.py --help``; see ``bench/README.md``. Never part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

#: Targets from the design: Skill-SD with LoRA costs at most 15 % more time per step and 5 % more peak memory.
TIME_TARGET = 1.15
MEMORY_TARGET = 1.05

#: variant name -> (trainer, sdl_coef). "skill_sd_l0" is SkillSDTrainer with λ = 0: no teacher at all.
VARIANTS = {
    "grpo": ("GRPOTrainer", None),
    "skill_sd": ("SkillSDTrainer", 0.001),
    "skill_sd_l0": ("SkillSDTrainer", 0.0),
}
LABELS = {"grpo": "GRPO", "skill_sd": "Skill-SD (λ=0.001)", "skill_sd_l0": "Skill-SD (λ=0)"}
MODELS = ("tiny", "smollm2")

#: A realistic skill (≈ the size of a summarized "golden workflow"), rendered into the teacher's system prompt.
SKILL = (
    "golden_workflow: 1. Read the whole question and restate the quantity asked for. 2. Write down every number "
    "given, with its unit. 3. Decide the operation before computing; prefer exact integer arithmetic. 4. Compute step "
    "by step, one line per step, and check each intermediate result. 5. Answer with the number only, inside "
    "<answer></answer>.\nmistake_analysis: earlier attempts answered before computing, dropped a unit, or added "
    "explanations after the answer tag; keep the answer last and short."
)
SYSTEM = "You are a careful assistant. Solve the task and give the final answer inside <answer></answer>."


# ----------------------------------------------------------------------------------------------------------------
# Worker: one trainer, one model, one run, in its own process
# ----------------------------------------------------------------------------------------------------------------
def build_dataset(n: int):
    """Single-turn arithmetic prompts; every row carries the same skill (so the teacher forward always runs)."""
    from datasets import Dataset

    rows = []
    for i in range(n):
        a, b = 3 + 7 * i, 11 + 5 * i
        rows.append(
            {
                "prompt": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"A shop sells {a} apples in the morning and {b} in the afternoon. "
                                                f"How many apples does it sell in total?"},
                ],
                "task_id": f"task-{i}",
                "skill": SKILL,
                "answer": str(a + b),
            }
        )
    return Dataset.from_list(rows)


def answer_reward(completions, answer, **kwargs) -> list[float]:
    """1 for the right number inside <answer>, plus a small format term so groups have reward spread."""
    rewards = []
    for completion, target in zip(completions, answer, strict=True):
        text = completion[0]["content"] if isinstance(completion, list) else str(completion)
        match = re.search(r"<answer>\s*(-?\d+)\s*</answer>", text)
        rewards.append(float(bool(match and match.group(1) == target)) + 0.1 * (len(set(text)) % 7))
    return rewards


class _Memory:
    """Peak memory since the last ``reset()``: process RSS on CPU, allocated CUDA memory on a GPU (bytes)."""

    def __init__(self, device: str):
        self.device = device
        self.high = 0  # the highest peak of the segments closed so far (see new_segment)
        self.method = "cuda.max_memory_allocated" if device == "cuda" else "rss_hwm"
        if device != "cuda" and not self._can_reset_hwm():
            # Without clear_refs the high-water mark is monotone over the process: it then includes the imports.
            self.method = "ru_maxrss"

    @staticmethod
    def _can_reset_hwm() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def current(self) -> int:
        if self.device == "cuda":
            import torch

            return torch.cuda.memory_allocated()
        if self.method == "rss_hwm":
            return _proc_status_kib("VmRSS") * 1024
        import psutil

        return psutil.Process().memory_info().rss

    def reset(self) -> int:
        """Reset the peak; return the current usage (the baseline of the next peak)."""
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        elif self.method == "rss_hwm":
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        return self.current()

    def new_segment(self) -> int:
        """Fold the current peak into ``high`` and start measuring a new one (to attribute peaks to phases)."""
        self.high = max(self.high, self.peak())
        return self.reset()

    def overall_peak(self) -> int:
        """The highest usage since the first ``reset()``, over every segment."""
        return max(self.high, self.peak())

    def peak(self) -> int:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated()
        if self.method == "rss_hwm":
            return _proc_status_kib("VmHWM") * 1024
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


class _Timer:
    """Wraps a bound method on an instance; records the wall time of every call and, optionally, its peak memory."""

    def __init__(self, obj, name: str, sync, memory: _Memory | None = None):
        self.calls: list[float] = []
        self.peaks: list[int] = []  # absolute peak memory inside each call (bytes), when `memory` is given
        self._inner = getattr(obj, name)
        self._sync = sync
        self._memory = memory
        setattr(obj, name, self)

    def __call__(self, *args, **kwargs):
        self._sync()
        if self._memory is not None:
            self._memory.new_segment()  # the peak read after the call is the call's own
        start = time.perf_counter()
        try:
            return self._inner(*args, **kwargs)
        finally:
            self._sync()
            self.calls.append(time.perf_counter() - start)
            if self._memory is not None:
                self.peaks.append(self._memory.peak())


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        match = re.search(rf"^{key}:\s+(\d+)\s+kB", f.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {key} line")
    return int(match.group(1))


def _config_kwargs(args, output_dir: str) -> dict[str, Any]:
    """The configuration shared by every variant (only the trainer class and λ differ)."""
    bf16 = args.device == "cuda" if args.bf16 is None else args.bf16
    return dict(
        output_dir=output_dir,
        per_device_train_batch_size=args.batch_size,
        num_generations=args.num_generations,
        max_completion_length=args.completion_length,
        # Fixed-length completions: every run samples exactly the same number of tokens.
        generation_kwargs={"min_new_tokens": args.completion_length},
        max_steps=args.warmup + args.steps,
        learning_rate=1e-5,
        use_cpu=args.device == "cpu",
        bf16=bf16,
        gradient_checkpointing=args.gradient_checkpointing,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        seed=args.seed,
        data_seed=args.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )


def run_worker(args) -> dict[str, Any]:
    """Build one trainer, train ``warmup + steps`` steps, and return its timings and memory."""
    import torch
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from skill_sd_trl import SkillSDConfig, SkillSDTrainer
    from skill_sd_trl.method.config import DEFAULT_SKILL_TEMPLATE
    from skill_sd_trl.rollout.prompts import add_context_to_prompt

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for, but torch sees no CUDA device.")
    trainer_name, sdl_coef = VARIANTS[args.variant]
    dataset = build_dataset(args.num_prompts)
    tokenizer = AutoTokenizer.from_pretrained(args.model_path)
    prompt_tokens = _prompt_tokens(tokenizer, dataset[0]["prompt"])
    teacher_tokens = _prompt_tokens(tokenizer, add_context_to_prompt(dataset[0]["prompt"], SKILL, DEFAULT_SKILL_TEMPLATE))
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                      task_type="CAUSAL_LM")
    memory = _Memory(args.device)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)

    with tempfile.TemporaryDirectory(prefix="skill-sd-bench-") as out:
        kwargs = _config_kwargs(args, out)
        base = memory.reset()
        if trainer_name == "GRPOTrainer":
            trainer = GRPOTrainer(model=args.model_path, reward_funcs=answer_reward, args=GRPOConfig(**kwargs),
                                  train_dataset=dataset, peft_config=lora)
        else:
            trainer = SkillSDTrainer(model=args.model_path, reward_funcs=answer_reward,
                                     args=SkillSDConfig(**kwargs, sdl_coef=sdl_coef), train_dataset=dataset,
                                     peft_config=lora)
        sync()
        setup_peak = memory.peak()
        train_start = memory.reset()
        memory.high = 0  # from here on, `high` collects the training segments only
        gen_timer = _Timer(trainer, "_generate", sync)
        teacher_timer = _Timer(trainer, "_teacher_logps", sync, memory) if hasattr(trainer, "_teacher_logps") else None
        trainer.train()
        train_peak = memory.overall_peak()
        peak = max(setup_peak, train_peak)

    step_times = [entry["step_time"] for entry in trainer.state.log_history if "step_time" in entry]
    if len(step_times) != args.warmup + args.steps:
        raise RuntimeError(f"expected {args.warmup + args.steps} logged step_time values, got {len(step_times)}")
    model = trainer.model
    return {
        "variant": args.variant,
        "trainer": trainer_name,
        "sdl_coef": sdl_coef,
        "has_teacher": getattr(trainer, "teacher", None) is not None,
        "step_times": step_times[args.warmup:],
        "warmup_step_times": step_times[: args.warmup],
        "generate_times": gen_timer.calls[args.warmup:],
        "teacher_times": teacher_timer.calls[args.warmup:] if teacher_timer else [],
        "memory_method": memory.method,
        "peak_bytes": peak - base,
        "train_peak_bytes": train_peak - train_start,
        "teacher_peak_bytes": max(teacher_timer.peaks) - base if teacher_timer and teacher_timer.peaks else None,
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "prompt_tokens": prompt_tokens,
        "teacher_prompt_tokens": teacher_tokens,
        "torch_threads": torch.get_num_threads(),
    }


def _prompt_tokens(tokenizer, messages) -> int:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # transformers 5 may return a BatchEncoding
        ids = ids["input_ids"]
    return len(ids)


# ----------------------------------------------------------------------------------------------------------------
# Driver: prepare models, launch the runs alternately, summarize
# ----------------------------------------------------------------------------------------------------------------
def prepare_model(name: str, workdir: Path) -> str:
    """A local folder for ``name`` (converted/saved once, before any timed run)."""
    if name == "tiny":
        from skill_sd_trl.models.tiny import save_tiny_model

        return save_tiny_model(workdir / "tiny")
    if name == "smollm2":
        from skill_sd_trl.models import resolve_model

        return resolve_model("smollm2-135m-instruct")
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


def launch(args, model: str, model_path: str, variant: str, repeat: int) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return its JSON result."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_path = handle.name
    command = [
        sys.executable, str(Path(__file__).resolve()), "--worker",
        "--variant", variant, "--model-path", model_path, "--result", result_path,
        *_shared_flags(args),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    started = time.perf_counter()
    try:
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.run_timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{model}/{variant} run {repeat} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        result = json.loads(Path(result_path).read_text())
    finally:
        Path(result_path).unlink(missing_ok=True)
    result.update(model=model, repeat=repeat, wall_s=time.perf_counter() - started)
    return result


def _shared_flags(args) -> list[str]:
    flags = [
        "--steps", str(args.steps), "--warmup", str(args.warmup), "--completion-length", str(args.completion_length),
        "--batch-size", str(args.batch_size), "--num-generations", str(args.num_generations),
        "--num-prompts", str(args.num_prompts), "--seed", str(args.seed), "--device", args.device,
        "--gradient-checkpointing" if args.gradient_checkpointing else "--no-gradient-checkpointing",
    ]
    if args.bf16 is not None:
        flags.append("--bf16" if args.bf16 else "--no-bf16")
    return flags


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (model, variant): step time over repeats; ratios to GRPO, pooled and paired per repeat."""
    summary: dict[str, Any] = {}
    for model in dict.fromkeys(r["model"] for r in runs):
        rows = {}
        for variant in dict.fromkeys(r["variant"] for r in runs if r["model"] == model):
            mine = [r for r in runs if r["model"] == model and r["variant"] == variant]
            run_means = [statistics.fmean(r["step_times"]) for r in mine]
            all_steps = [t for r in mine for t in r["step_times"]]
            rows[variant] = {
                "runs": len(mine),
                "step_time_mean": statistics.fmean(all_steps),
                "step_time_std": _mean_std(all_steps)[1],
                "run_means": run_means,
                "generate_mean": statistics.fmean([t for r in mine for t in r["generate_times"]] or [0.0]),
                "teacher_mean": statistics.fmean([t for r in mine for t in r["teacher_times"]] or [0.0]),
                "peak_mib_mean": statistics.fmean(r["peak_bytes"] for r in mine) / 2**20,
                "peak_mib_std": _mean_std([r["peak_bytes"] / 2**20 for r in mine])[1],
                "train_peak_mib_mean": statistics.fmean(r["train_peak_bytes"] for r in mine) / 2**20,
                "teacher_peak_mib_mean": (
                    statistics.fmean(r["teacher_peak_bytes"] for r in mine) / 2**20
                    if all(r["teacher_peak_bytes"] is not None for r in mine) else None
                ),
                "params": mine[0]["params"],
                "trainable_params": mine[0]["trainable_params"],
                "prompt_tokens": mine[0]["prompt_tokens"],
                "teacher_prompt_tokens": mine[0]["teacher_prompt_tokens"],
            }
        if "grpo" in rows:
            base = rows["grpo"]
            for variant, row in rows.items():
                if variant == "grpo":
                    continue
                row["time_ratio"] = row["step_time_mean"] / base["step_time_mean"]
                row["memory_ratio"] = row["peak_mib_mean"] / base["peak_mib_mean"]
                paired = [a / b for a, b in zip(row["run_means"], base["run_means"])]
                row["paired_time_ratios"] = paired
                row["time_pass"] = row["time_ratio"] <= TIME_TARGET
                row["memory_pass"] = row["memory_ratio"] <= MEMORY_TARGET
        summary[model] = rows
    return summary


def render_table(summary: dict[str, Any]) -> str:
    """A Markdown table (pasteable into docs/benchmarks.md)."""
    lines = [
        "| model | trainer | step time (s), mean ± std | of which sampling (s) | teacher forward (s) | peak memory (MiB) "
        "| time ratio (≤ 1.15) | memory ratio (≤ 1.05) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, rows in summary.items():
        label = f"{model} ({rows['grpo']['params'] / 1e6:.2f}M)"  # the base model + student LoRA, as GRPO sees it
        for variant, row in rows.items():
            time_cell = memory_cell = "—"
            if "time_ratio" in row:
                paired = ", ".join(f"{x:.2f}" for x in row["paired_time_ratios"])
                time_cell = f"{row['time_ratio']:.3f} {'PASS' if row['time_pass'] else 'MISS'} (per repeat: {paired})"
                memory_cell = f"{row['memory_ratio']:.3f} {'PASS' if row['memory_pass'] else 'MISS'}"
            teacher = f"{row['teacher_mean']:.3f}" if row["teacher_mean"] else "—"
            lines.append(
                f"| {label} | {LABELS[variant]} | {row['step_time_mean']:.3f} ± "
                f"{row['step_time_std']:.3f} | {row['generate_mean']:.3f} | {teacher} | {row['peak_mib_mean']:.0f} ± "
                f"{row['peak_mib_std']:.0f} | {time_cell} | {memory_cell} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        result = run_worker(args)
        Path(args.result).write_text(json.dumps(result))
        return 0

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for name, known, flag in ((models, MODELS, "--models"), (variants, VARIANTS, "--variants")):
        unknown = [x for x in name if x not in known]
        if unknown:
            raise SystemExit(f"{flag}: unknown {unknown}; choose from {', '.join(known)}.")
    if "grpo" not in variants:
        raise SystemExit("--variants must include 'grpo': every ratio is relative to it.")

    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="skill-sd-bench-models-") as workdir:
        for model in models:
            path = prepare_model(model, Path(workdir))
            for repeat in range(args.repeats):
                for variant in variants:  # alternate: GRPO, Skill-SD, [λ=0,] GRPO, Skill-SD, ...
                    result = launch(args, model, path, variant, repeat)
                    runs.append(result)
                    print(
                        f"[{model} r{repeat}] {LABELS[variant]:<18} step {statistics.fmean(result['step_times']):.3f}s"
                        f"  peak {result['peak_bytes'] / 2**20:.0f} MiB  ({result['wall_s']:.0f}s wall)",
                        file=sys.stderr, flush=True,
                    )
    summary = summarize(runs)
    table = render_table(summary)
    print(table)
    meta = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": args.device,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": _versions(),
        "torch_threads": runs[0]["torch_threads"] if runs else None,
        "memory_method": runs[0]["memory_method"] if runs else None,
        "total_wall_s": time.perf_counter() - started,
        "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "result", "model_path", "variant")},
    }
    print(f"\nmemory: {meta['memory_method']}; torch threads: {meta['torch_threads']}; "
          f"total {meta['total_wall_s']:.0f}s", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=2))
    return 0


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--models", default="tiny,smollm2", help=f"comma-separated, from: {', '.join(MODELS)}")
    parser.add_argument("--variants", default="grpo,skill_sd,skill_sd_l0",
                        help=f"comma-separated, run in this order each repeat; from: {', '.join(VARIANTS)}")
    parser.add_argument("--repeats", type=int, default=3, help="runs per (model, variant), alternating variants")
    parser.add_argument("--steps", type=int, default=3, help="measured optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=1, help="steps trained first and not measured")
    parser.add_argument("--completion-length", type=int, default=32, help="tokens sampled per completion (fixed)")
    parser.add_argument("--batch-size", type=int, default=8, help="per_device_train_batch_size (completions/step)")
    parser.add_argument("--num-generations", type=int, default=4, help="completions per prompt (GRPO group size)")
    parser.add_argument("--num-prompts", type=int, default=16, help="rows in the synthetic dataset")
    parser.add_argument("--seed", type=int, default=0, help="same seed for every trainer")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 training (default: on for cuda, off for cpu)")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True,
                        help="GRPOConfig's default is on")
    parser.add_argument("--run-timeout", type=int, default=600, help="seconds before one run is abandoned")
    parser.add_argument("--json", help="write runs, summary and machine details to this file")
    # Internal: the driver calls this script again with these to run one measurement.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=tuple(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch_size % args.num_generations:
        parser.error("--batch-size must be a multiple of --num-generations")
    if min(args.repeats, args.steps, args.completion_length) < 1 or args.warmup < 0:
        parser.error("--repeats, --steps and --completion-length must be ≥ 1, --warmup ≥ 0")
    return args


if __name__ == "__main__":
    sys.exit(main())
