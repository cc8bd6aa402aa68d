"""One cell of an experiment, in its own process: train from ``cell.json`` + ``recipe.yaml``, evaluate every
``eval_every`` steps, write ``result.json`` atomically (last)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ..atomic import atomic_write_json
from .spec import CELL_FILE, CELL_RECIPE, RESULT_FILE


def peak_memory() -> dict[str, float | None]:
    """Peak memory of this process: resident set (VmHWM: reset by exec, unlike ru_maxrss) and accelerator (if any)."""
    rss = None
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    rss = int(line.split()[1]) / 1024.0
    except OSError:
        import resource

        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rss = maxrss / (1024.0 * 1024.0) if sys.platform == "darwin" else maxrss / 1024.0
    gpu = None
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            gpu = torch.cuda.max_memory_allocated() / (1024.0 * 1024.0)
    except Exception:  # noqa: BLE001 - memory accounting must never fail a finished run
        gpu = None
    return {"peak_rss_mb": rss, "peak_gpu_mb": gpu}


def machine_info() -> dict[str, Any]:
    """What a cell's timings depend on: CPU model, torch's CPU kernel level, core count and GPU (if any)."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpus": os.cpu_count(),
            "gpu": gpu}


def curve_evaluator(trainer, script, settings: dict):
    """``evaluate(step, model) -> (test, train or None, {extra split: result})``: greedy episodes with the plain
    prompt on the held-out split, on the tasks trained on, and on any further held-out splits (``settings``: the
    experiment's ``eval`` block)."""
    from ..app.evaluation import evaluate

    env_spec = script.spec
    train_tasks = settings["train_tasks"]
    if train_tasks is None:
        train_tasks = script.max_train_samples  # the tasks trained on (None: the whole train split)
    common = dict(spec=env_spec, limits=script.limits(),
                  batch_size=settings["batch_size"] or script.eval_batch_size,
                  completion_budget=trainer.args.max_completion_length, tokenizer=trainer.processing_class,
                  do_sample=not settings["greedy"], temperature=settings["temperature"], progress=False)

    def evaluate_at(step: int, model):
        test = evaluate(f"step {step}", split=script.eval_split or env_spec.eval_split, model=model,
                        max_samples=settings["test_tasks"], **common)
        train = None
        if train_tasks != 0:
            train = evaluate(f"step {step}", split=script.train_split or env_spec.train_split, model=model,
                             max_samples=train_tasks, skip_samples=script.skip_train_samples, **common)
        extras = {split: evaluate(f"step {step}", split=split, model=model, **common)
                  for split in settings.get("extra_splits") or ()}
        return test, train, extras

    return evaluate_at


class LearningCurveCallback(TrainerCallback):
    """Greedy test (and train-task) evaluation at step 0 and every ``eval_every`` steps, timed apart from training.

    ``evaluate(step, model) -> (test, train or None, {split: result})`` plays the episodes (:func:`curve_evaluator`); ``base_eval``,
    when set, is the file where every cell of the same base model and tasks shares its step-0 evaluation.
    """

    def __init__(self, trainer, evaluate, eval_every: int, max_steps: int, base_eval: str | None = None,
                 cell_start: float | None = None):
        self.trainer = trainer
        self.evaluate = evaluate
        self.eval_every = eval_every
        self.max_steps = max_steps
        self.base_eval = Path(base_eval) if base_eval else None
        self.cell_start = time.perf_counter() if cell_start is None else cell_start
        self.evals: list[dict] = []
        self.steps: list[dict] = []
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self._mark = None

    def _evaluate(self, step: int) -> None:
        from ..app.evaluation import evaluation_mode
        from ..rollout import episode_metrics

        start = time.perf_counter()
        with evaluation_mode(self.trainer) as model:
            test, train, extras = self.evaluate(step, model)
        seconds = time.perf_counter() - start
        self.eval_seconds += seconds
        row = {"step": step, "test_acc": test.acc, "test_comp": test.comp, "test_reward": test.mean_reward,
               "test_episodes": test.num_episodes, "train_acc": train.acc if train else None,
               "train_comp": train.comp if train else None, "train_episodes": train.num_episodes if train else 0,
               "train_seconds": self.train_seconds, "wall_seconds": time.perf_counter() - self.cell_start,
               "eval_seconds": seconds,
               # how the greedy episodes ended (turns, invalid actions, stop reasons), under the training logs'
               # names: what explains a change of Acc. (for example a lost answer format)
               "test_env": episode_metrics(test.episodes),
               "train_env": episode_metrics(train.episodes) if train else None}
        for split, result in extras.items():
            row.update({f"{split}_acc": result.acc, f"{split}_comp": result.comp,
                        f"{split}_episodes": result.num_episodes})
        self.evals.append(row)
        print(f"[experiment] step {step}: test Acc. {test.acc:.1f} Comp. {test.comp:.1f}"
              + (f", train Acc. {train.acc:.1f}" if train else ""), flush=True)

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._evaluate_base(int(state.global_step))
        self._mark = time.perf_counter()

    def _evaluate_base(self, step: int) -> None:
        """Step 0 is the same greedy evaluation of the same model in every cell that shares ``base_eval``: the first
        cell runs it, the others read it (marked ``shared``)."""
        shared = self.base_eval if step == 0 else None
        if shared is None:
            self._evaluate(step)
            return
        from filelock import FileLock

        shared.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(shared) + ".lock"):  # cells started together (--jobs): one evaluates, the others wait
            if shared.is_file():
                row = json.loads(shared.read_text(encoding="utf-8"))
                self.evals.append(dict(row, train_seconds=0.0, wall_seconds=time.perf_counter() - self.cell_start,
                                       eval_seconds=0.0, shared=True))
                print(f"[experiment] step 0: test Acc. {row['test_acc']:.1f} (shared base evaluation {shared})",
                      flush=True)
                return
            self._evaluate(step)
            atomic_write_json(shared, self.evals[-1])

    def on_step_end(self, args, state, control, **kwargs):
        seconds = time.perf_counter() - self._mark
        self.train_seconds += seconds
        step = int(state.global_step)
        self.steps.append({"step": step, "seconds": seconds})
        if state.is_world_process_zero and (step % self.eval_every == 0 or step == self.max_steps):
            self._evaluate(step)
        self._mark = time.perf_counter()


def _step_logs(log_history: list[dict]) -> dict[int, dict[str, float]]:
    """The last logged trainer metrics of each step (numeric values; the end-of-training summary row excluded)."""
    out: dict[int, dict[str, float]] = {}
    for row in log_history:
        if "step" not in row or "train_runtime" in row:
            continue
        values = {k: float(v) for k, v in row.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}
        out.setdefault(int(row["step"]), {}).update(values)
    return out


def run_cell(cell_dir: str | os.PathLike) -> dict:
    """Train one cell from its ``cell.json`` + ``recipe.yaml`` and write ``result.json`` atomically (last)."""
    cell_start = time.perf_counter()
    cell_dir = Path(cell_dir)
    spec = json.loads((cell_dir / CELL_FILE).read_text(encoding="utf-8"))
    recipe_path = cell_dir / CELL_RECIPE

    import torch
    import transformers
    import trl

    from ..app.methods import method_label
    from ..app.recipe import parse_train_args
    from ..app.train import build_trainer
    from ..skills.bank import SkillBank

    script, args, model_args, _ = parse_train_args(["--config", str(recipe_path)])
    trainer = build_trainer(script, args, model_args)
    curve = LearningCurveCallback(trainer, curve_evaluator(trainer, script, spec["eval"]), spec["eval_every"],
                                  spec["max_steps"], spec.get("base_eval"), cell_start)
    trainer.add_callback(curve)  # after the summarizer callback: a step's skill wait is part of its training time
    trainer.train()
    if trainer.state.global_step != spec["max_steps"]:
        raise RuntimeError(f"cell stopped at step {trainer.state.global_step}, not max_steps={spec['max_steps']}: "
                           "cells must train equal optimizer steps")
    run_dir = Path(args.output_dir)
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()  # nothing saved there (save_strategy "no"); keep the cell folder tidy
    if isinstance(trainer.skill_provider, SkillBank):  # what the teacher was shown, kept with the cell's result
        trainer.skill_provider.save(cell_dir / "skill_bank.json")
    logs = _step_logs(trainer.state.log_history)
    steps = [dict(s, log=logs.get(s["step"], {})) for s in curve.steps]
    step_seconds = [s["seconds"] for s in curve.steps]
    memory = peak_memory()
    final = curve.evals[-1]
    result = {
        "method": spec["method"], "seed": spec["seed"], "task_set": spec["task_set"],
        "label": method_label(script, args),
        "model": "tiny (random)" if script.tiny_model else model_args.model_name_or_path,
        "max_steps": spec["max_steps"], "eval_every": spec["eval_every"], "eval_settings": spec["eval"],
        "fingerprint": spec["fingerprint"],
        "evals": curve.evals, "steps": steps,
        "final": {k: final[k] for k in ("step", "test_acc", "test_comp", "train_acc", "train_comp",
                                        *(f"{s}_{m}" for s in spec["eval"].get("extra_splits") or ()
                                          for m in ("acc", "comp")))},
        "train_seconds": curve.train_seconds, "eval_seconds": curve.eval_seconds,
        "wall_seconds": time.perf_counter() - cell_start,
        "mean_step_seconds": sum(step_seconds) / len(step_seconds),
        **memory,
        "peak_memory_mb": memory["peak_gpu_mb"] if memory["peak_gpu_mb"] is not None else memory["peak_rss_mb"],
        "memory_kind": "gpu_allocated" if memory["peak_gpu_mb"] is not None else "rss",
        "recipe": json.loads(json.dumps(_read_yaml(recipe_path), default=str)),
        "machine": machine_info(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
                     "python": sys.version.split()[0]},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(cell_dir / RESULT_FILE, result)
    return result


def _read_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
