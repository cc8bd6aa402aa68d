"""The matrix of cells (parent process): each unfinished cell in its own process, up to ``jobs`` at a time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .spec import (
    CELL_LOG,
    EVENTS_FILE,
    RESULT_FILE,
    Experiment,
    ExperimentConfigError,
    _write_cell_spec,
    cell_recipe,
    check_fingerprint,
    validate_cells,
)


def _log_event(exp: Experiment, **event) -> None:
    exp.output_dir.mkdir(parents=True, exist_ok=True)
    with open(exp.output_dir / EVENTS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps({"time": time.time(), **event}) + "\n")


def _start_cell(cell_dir: Path, threads: int | None = None) -> subprocess.Popen:
    """Start ``python -m skill_sd_trl.experiment run-cell`` with its output going to the cell's log.

    ``threads``: the torch/OpenMP threads of the cell (``--jobs`` splits the cores between concurrent cells, so that
    two cells never fight over one core); ``None`` keeps the environment's setting.
    """
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    with open(cell_dir / CELL_LOG, "w", encoding="utf-8") as log:  # the child keeps its own handle
        return subprocess.Popen([sys.executable, "-m", "skill_sd_trl.experiment", "run-cell", str(cell_dir)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)


def cell_threads(jobs: int, environ=os.environ, cpus: int | None = None) -> int | None:
    """Threads per cell when ``jobs`` cells run at once: the cores split evenly (at least one each); ``None`` (keep
    the environment's) for one job at a time or when ``OMP_NUM_THREADS`` is set explicitly."""
    if jobs <= 1 or environ.get("OMP_NUM_THREADS"):
        return None
    return max(1, (cpus or os.cpu_count() or 1) // jobs)


def _prepare_models(exp: Experiment, methods) -> None:
    """Build an embedded or warm-started base model once, before the first cell (so no cell's clock pays for it).

    ``resolve_model`` returns folders and Hub ids unchanged without loading anything.
    """
    from ..models import resolve_model

    recipe = cell_recipe(exp, methods[0], 0, 0, exp.output_dir)  # the model is the same for every method
    if recipe.get("model_name_or_path") and not recipe.get("tiny_model"):
        resolve_model(recipe["model_name_or_path"])


def run_matrix(exp: Experiment, methods: list[str], seeds: list[int], task_sets: list[int],
               force: bool = False, jobs: int = 1) -> list[tuple[str, int, int]]:
    """Run every unfinished cell, one process each and up to ``jobs`` at a time; returns the failed cells (the others'
    results are on disk)."""
    if jobs < 1:
        raise ExperimentConfigError(f"--jobs: must be a positive integer, got {jobs}")
    validate_cells(exp, methods, seeds, task_sets)
    cells = [(m, s, lv) for m in methods for s in seeds for lv in task_sets]
    todo = [c for c in cells if force or not (exp.cell_dir(*c) / RESULT_FILE).exists()]
    for cell in cells:
        if cell not in todo:
            stored = json.loads((exp.cell_dir(*cell) / RESULT_FILE).read_text(encoding="utf-8")).get("fingerprint")
            check_fingerprint(exp, *cell, stored)
    if todo:
        _prepare_models(exp, [c[0] for c in todo])
    threads = cell_threads(jobs)
    queue = []
    for i, (method, seed, task_set) in enumerate(cells, 1):
        name = f"[{i}/{len(cells)}] {method} seed {seed} task set {task_set}"
        if (method, seed, task_set) not in todo:
            print(f"{name}: finished earlier, skipped", flush=True)
            _log_event(exp, event="skip", method=method, seed=seed, task_set=task_set)
        else:
            queue.append((name, (method, seed, task_set)))
    failed, running = [], []
    while queue or running:
        while queue and len(running) < jobs:
            name, cell = queue.pop(0)
            running.append((name, cell, _start(exp, name, cell, threads), time.perf_counter()))
        time.sleep(0.2)
        for entry in [r for r in running if r[2].poll() is not None]:
            running.remove(entry)
            if not _finish(exp, *entry):
                failed.append(entry[1])
    return failed


def _start(exp: Experiment, name: str, cell: tuple[str, int, int], threads: int | None) -> subprocess.Popen:
    cell_dir = exp.cell_dir(*cell)
    for stale in (cell_dir / RESULT_FILE, cell_dir / "run"):  # a killed or forced cell starts clean
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    cell_dir = _write_cell_spec(exp, *cell)
    print(f"{name}: training {exp.max_steps} steps (log: {cell_dir / CELL_LOG})", flush=True)
    method, seed, task_set = cell
    _log_event(exp, event="run", method=method, seed=seed, task_set=task_set)
    return _start_cell(cell_dir, threads)


def _finish(exp: Experiment, name: str, cell: tuple[str, int, int], proc: subprocess.Popen, start: float) -> bool:
    """Report a cell whose process ended; False when it failed."""
    method, seed, task_set = cell
    cell_dir = exp.cell_dir(*cell)
    code = proc.returncode
    if code != 0 or not (cell_dir / RESULT_FILE).exists():
        tail = (cell_dir / CELL_LOG).read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        print(f"{name}: FAILED (exit status {code}); last lines of {cell_dir / CELL_LOG}:\n  " + "\n  ".join(tail),
              file=sys.stderr, flush=True)
        _log_event(exp, event="fail", method=method, seed=seed, task_set=task_set, code=code)
        return False
    final = json.loads((cell_dir / RESULT_FILE).read_text(encoding="utf-8"))["final"]
    print(f"{name}: done in {time.perf_counter() - start:.1f} s, test Acc. {final['test_acc']:.1f}, Comp. "
          f"{final['test_comp']:.1f}", flush=True)
    _log_event(exp, event="done", method=method, seed=seed, task_set=task_set)
    return True
