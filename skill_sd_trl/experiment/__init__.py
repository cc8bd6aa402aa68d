"""Learning experiments: a matrix of methods × seeds × task sets, trained at equal optimizer steps, then aggregated.

``skill-sd-trl experiment --config recipes/sokoban/experiments/experiment_cpu.yaml`` reads an *experiment* YAML (not a
train recipe): a base train recipe whose fields are every cell's defaults, named methods (recipe overrides), seeds,
task sets, ``max_steps``, ``eval_every`` and evaluation settings. Each cell (method, seed, task set) trains in its own
``python -m skill_sd_trl.experiment run-cell <cell dir>`` process, so its peak memory and RNG are its own; every
``eval_every`` steps (and at step 0, the base model) a callback evaluates the student greedily, with the plain prompt,
on the environment's held-out tasks and on the training tasks. A finished cell writes ``result.json`` atomically; a
re-run skips finished cells, and a killed cell (no ``result.json``) is run again. Aggregation writes ``results.json``, a
paper-style Markdown table (``table.md``) and curves as PNG. See docs/experiments.md.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from pathlib import Path

from .matrix import cell_threads, run_matrix
from .results import aggregate, format_table, load_results, mean_std, same_machine_ratio, summarize, table_notes
from .spec import (
    BASE_EVALS_DIR,
    CELL_FILE,
    CELL_LOG,
    CELL_RECIPE,
    CURVE_STEP_FILE,
    CURVE_TIME_FILE,
    DIAGNOSTICS_FILE,
    EVENTS_FILE,
    RESULT_FILE,
    RESULTS_FILE,
    TABLE_FILE,
    EvalSettings,
    Experiment,
    ExperimentConfigError,
    base_eval_path,
    cell_fingerprint,
    cell_recipe,
    check_fingerprint,
    load_experiment,
    parse_list,
    validate_cells,
)

__all__ = [
    "BASE_EVALS_DIR", "CELL_FILE", "CELL_LOG", "CELL_RECIPE", "CURVE_STEP_FILE", "CURVE_TIME_FILE", "DIAGNOSTICS_FILE",
    "EVENTS_FILE", "RESULT_FILE", "RESULTS_FILE", "TABLE_FILE", "EvalSettings", "Experiment", "ExperimentConfigError",
    "aggregate", "base_eval_path", "cell_fingerprint", "cell_recipe", "cell_threads",
    "check_fingerprint", "experiment_main", "format_table", "load_experiment", "load_results", "main",
    "mean_std", "parse_list", "run_matrix", "same_machine_ratio", "summarize",
    "table_notes", "validate_cells",
]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="skill-sd-trl experiment",
        description="Train a matrix of methods × seeds × task sets at equal optimizer steps, then aggregate "
                    "(docs/experiments.md).")
    p.add_argument("--config", required=True,
                   help="Experiment YAML, e.g. recipes/sokoban/experiments/experiment_cpu.yaml.")
    p.add_argument("--methods", help="Comma-separated method names (default: the config's default_methods).")
    p.add_argument("--seeds", help="Comma-separated training seeds (default: the config's seeds).")
    p.add_argument("--task-sets", help="Comma-separated task-set seeds: the environment's task_set_arg in env_args "
                                       "(Sokoban's level seed, the app world's world seed; default: the config's).")
    p.add_argument("--cell", help="Run one cell alone: METHOD:SEED or METHOD:SEED:TASK_SET (no aggregation).")
    p.add_argument("--output-dir", help="Override the config's output_dir.")
    p.add_argument("--max-steps", type=int, help="Override the config's max_steps (e.g. a short timing run).")
    p.add_argument("--eval-every", type=int, help="Override the config's eval_every.")
    p.add_argument("--aggregate-only", action="store_true", help="Train nothing: aggregate the finished cells.")
    p.add_argument("--force", action="store_true", help="Re-run selected cells even if they have a result.")
    p.add_argument("--jobs", type=int, default=1,
                   help="Cells trained at once (default 1); the cores are split between them (OMP_NUM_THREADS).")
    return p


def _select(exp: Experiment, a) -> tuple[list[str], list[int], list[int]]:
    methods = parse_list(a.methods, "--methods", str) if a.methods else list(exp.default_methods)
    for m in methods:
        if m not in exp.methods:
            close = difflib.get_close_matches(m, list(exp.methods), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ExperimentConfigError(f"--methods: unknown method {m!r}{hint}; defined in "
                                        f"{str(exp.path)!r}: {', '.join(exp.methods)}")
    seeds = parse_list(a.seeds, "--seeds") if a.seeds else list(exp.seeds)
    task_sets = parse_list(a.task_sets, "--task-sets") if a.task_sets else list(exp.task_sets)
    return methods, seeds, task_sets


def _parse_cell(exp: Experiment, text: str, task_sets: list[int]) -> tuple[str, int, int]:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ExperimentConfigError(f"--cell: expected METHOD:SEED or METHOD:SEED:TASK_SET, got {text!r}")
    method = parts[0]
    if method not in exp.methods:
        raise ExperimentConfigError(f"--cell: unknown method {method!r}; defined: {', '.join(exp.methods)}")
    try:
        seed = int(parts[1])
        task_set = int(parts[2]) if len(parts) == 3 else None
    except ValueError:
        raise ExperimentConfigError(f"--cell: seeds must be integers, got {text!r}") from None
    if task_set is None:
        if len(task_sets) != 1:
            raise ExperimentConfigError(f"--cell: several task sets ({task_sets}); "
                                        f"say which: {method}:{seed}:LEVEL")
        task_set = task_sets[0]
    return method, seed, task_set


def experiment_main(argv: list[str]) -> int:
    """``skill-sd-trl experiment ...``: run (resumably) and aggregate; config errors exit with one line."""
    a = _parser().parse_args(argv)
    try:
        exp = load_experiment(a.config)
        if a.output_dir:
            exp.output_dir = Path(a.output_dir)
        for flag, name in (("--max-steps", "max_steps"), ("--eval-every", "eval_every")):
            value = getattr(a, name)
            if value is not None:
                if value < 1:
                    raise ExperimentConfigError(f"{flag}: must be a positive integer, got {value}")
                setattr(exp, name, value)
        if a.jobs < 1:
            raise ExperimentConfigError(f"--jobs: must be a positive integer, got {a.jobs}")
        methods, seeds, task_sets = _select(exp, a)
        if a.cell:
            method, seed, task_set = _parse_cell(exp, a.cell, task_sets)
            failed = run_matrix(exp, [method], [seed], [task_set], force=a.force, jobs=a.jobs)
            return 1 if failed else 0
        failed = [] if a.aggregate_only else run_matrix(exp, methods, seeds, task_sets, force=a.force, jobs=a.jobs)
        aggregate(exp, methods, seeds, task_sets)
    except ExperimentConfigError as e:
        raise SystemExit(f"error: {e}") from None
    if failed:
        print(f"error: {len(failed)} cell(s) failed: {', '.join(f'{m}:{s}:{lv}' for m, s, lv in failed)}; "
              "their logs are in cells/<method>/seed<k>-tasks<t>/log.txt; run the command again to retry them.",
              file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if argv and argv[0] == "run-cell":
        if len(argv) != 2:
            raise SystemExit("usage: python -m skill_sd_trl.experiment run-cell <cell dir>")
        from .cell import run_cell  # imports transformers: only the cell's own process needs it

        run_cell(argv[1])
        return 0
    return experiment_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
