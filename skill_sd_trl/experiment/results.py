"""Statistics, tables and plots over an experiment's finished cells: ``results.json``, ``table.md`` and PNG curves."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..app.report import integer_step_ticks
from ..atomic import atomic_write, atomic_write_json
from .spec import (
    CURVE_STEP_FILE,
    CURVE_TIME_FILE,
    DIAGNOSTICS_FILE,
    RENAMED_KEYS,
    RESULT_FILE,
    RESULTS_FILE,
    TABLE_FILE,
    Experiment,
    ExperimentConfigError,
    check_fingerprint,
)

# Prefixes of the trainer's diagnostic metrics summarized per method (every numeric key is kept per step anyway).
DIAGNOSTIC_PREFIXES = ("teacher/", "self_distillation/", "skills/")
# Panels of diagnostics.png: (title, keys); a panel is drawn when any of its keys was logged.
DIAGNOSTIC_PANELS = (
    ("teacher − student log-prob gap", ("teacher/logp_gap", "teacher/logp_gap_success", "teacher/logp_gap_failure")),
    ("teacher gap by turn", ("teacher/logp_gap_first_turn", "teacher/logp_gap_later_turns",
                             "teacher/logp_gap_success_first_turn", "teacher/logp_gap_success_later_turns")),
    ("L_SDL (without λ)", ("self_distillation/sdl", "self_distillation/sdl_success", "self_distillation/sdl_failure")),
    ("skill coverage of the batch", ("skills/coverage",)),
    ("skill bank", ("skills/bank_size", "skills/added", "skills/duplicates")),
)
# Columns of table.md's diagnostics table (and results.json's ``run_diagnostics``, keyed by header): (header, trainer
# log key, how a cell's steps reduce to one number). "mean" is over the steps that logged the key (a teacher metric is
# logged only where the teacher scored), "final" the last such step, "count" how many there were.
DIAGNOSTIC_COLUMNS = (
    ("groups without reward spread", "frac_reward_zero_std", "mean"),
    ("grad norm", "grad_norm", "mean"),
    ("L_SDL a trajectory", "self_distillation/sdl_sequence", "mean"),
    ("gap, all", "teacher/logp_gap", "mean"),
    ("gap, solved", "teacher/logp_gap_success", "mean"),
    ("gap, failed", "teacher/logp_gap_failure", "mean"),
    ("gap, first turn", "teacher/logp_gap_first_turn", "mean"),
    ("gap, later turns", "teacher/logp_gap_later_turns", "mean"),
    ("steps with teacher signal", "teacher/logp_gap", "count"),
    ("final skill coverage", "skills/coverage", "final"),
)

def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1; None with fewer than 2 values)."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def read_cell(path: Path) -> dict:
    """A cell's ``result.json``; one of an earlier version (``level_seed``, ``test_levels``) reads as today's."""
    cell = json.loads(path.read_text(encoding="utf-8"))
    if "task_set" not in cell and "level_seed" in cell:
        cell["task_set"] = cell.pop("level_seed")
    settings = cell.get("eval_settings")
    if isinstance(settings, dict):
        cell["eval_settings"] = {RENAMED_KEYS.get(k, k): v for k, v in settings.items()}
    return cell


def load_results(exp: Experiment, methods, seeds, task_sets) -> tuple[list[dict], list[tuple[str, int, int]]]:
    cells, missing = [], []
    for m in methods:
        for s in seeds:
            for lv in task_sets:
                path = exp.cell_dir(m, s, lv) / RESULT_FILE
                if path.exists():
                    cell = read_cell(path)
                    check_fingerprint(exp, m, s, lv, cell.get("fingerprint"))
                    cells.append(cell)
                else:
                    missing.append((m, s, lv))
    return cells, missing


def paired_differences(cells: list[dict], ref_cells: list[dict], key: str = "test_acc") -> list[float]:
    """``final[key]`` of each cell minus the reference's on the same seed and task set (pairs only): the comparison
    at equal seeds, which removes what a seed or a task set does to both methods alike."""
    ref = {(r["seed"], r["task_set"]): r["final"][key] for r in ref_cells}
    return [c["final"][key] - ref[(c["seed"], c["task_set"])] for c in cells if (c["seed"], c["task_set"]) in ref]


def cell_diagnostic(cell: dict, key: str, reduce: str) -> float | None:
    """One cell's value of a trainer metric over its steps (see :data:`DIAGNOSTIC_COLUMNS`); None if never logged."""
    values = [s["log"][key] for s in cell["steps"] if s["log"].get(key) is not None]
    if not values:
        return None
    return {"mean": lambda: mean_std(values)[0], "final": lambda: values[-1], "count": lambda: float(len(values))}[reduce]()


def _curve(cells: list[dict], key: str = "test_acc") -> list[dict]:
    """Per eval step common to all cells: mean/std of ``key`` and mean training seconds."""
    if not cells:
        return []
    common = set.intersection(*({e["step"] for e in c["evals"]} for c in cells))
    rows = []
    for step in sorted(common):
        evs = [next(e for e in c["evals"] if e["step"] == step) for c in cells]
        mean, std = mean_std([e[key] for e in evs])
        t_mean, t_std = mean_std([e["train_seconds"] for e in evs])
        rows.append({"step": step, "mean": mean, "std": std, "train_seconds": t_mean, "train_seconds_std": t_std})
    return rows


def summarize(exp: Experiment, cells: list[dict], methods: list[str]) -> dict:
    """Per method: final test/train Acc./Comp. mean ± std over its cells, Δ vs base, speed/memory vs the reference."""
    by_method = {m: [c for c in cells if c["method"] == m] for m in methods}
    ref = exp.reference_method if by_method.get(exp.reference_method) else None
    ref_cells = by_method.get(ref, [])
    ref_final, _ = mean_std([c["final"]["test_acc"] for c in ref_cells])
    base_evals = [c["evals"][0] for c in cells if c["evals"] and c["evals"][0]["step"] == 0]
    summary: dict[str, Any] = {
        "reference_method": ref,
        "base": {"n": len(base_evals),
                 **_ms("test_acc", [e["test_acc"] for e in base_evals]),
                 **_ms("test_comp", [e["test_comp"] for e in base_evals]),
                 **_ms("train_acc", [e["train_acc"] for e in base_evals]),
                 **{k: v for s in exp.eval.extra_splits for m in ("acc", "comp")
                    for k, v in _ms(f"{s}_{m}", [e.get(f"{s}_{m}") for e in base_evals]).items()}},
        "methods": {},
    }
    for m, mine in by_method.items():
        if not mine:
            continue
        finals = [c["final"] for c in mine]
        curve = _curve(mine)
        step_mean, step_std = mean_std([c["mean_step_seconds"] for c in mine])
        mem_mean, mem_std = mean_std([c["peak_memory_mb"] for c in mine])
        reach = None
        if ref_final is not None:
            reach = next((r["step"] for r in curve if r["mean"] >= ref_final - 1e-9), None)
        deltas = [c["final"]["test_acc"] - c["evals"][0]["test_acc"] for c in mine if c["evals"][0]["step"] == 0]
        paired = paired_differences(mine, ref_cells) if ref and m != ref else []
        diagnostics = {}
        for c in mine:
            last = c["steps"][-1]["log"] if c["steps"] else {}
            for k, v in last.items():
                if k.startswith(DIAGNOSTIC_PREFIXES):
                    diagnostics.setdefault(k, []).append(v)
        summary["methods"][m] = {
            "n": len(mine), "label": mine[0].get("label"), "seeds": sorted({c["seed"] for c in mine}),
            "task_sets": sorted({c["task_set"] for c in mine}),
            **_ms("test_acc", [f["test_acc"] for f in finals]),
            **_ms("test_comp", [f["test_comp"] for f in finals]),
            **_ms("train_acc", [f["train_acc"] for f in finals]),
            **_ms("delta_acc", deltas),
            **_ms("paired_delta_acc", paired), "paired_n": len(paired),
            "paired_above": sum(d > 0 for d in paired), "paired_below": sum(d < 0 for d in paired),
            **{k: v for s in exp.eval.extra_splits for m in ("acc", "comp")
               for k, v in _ms(f"{s}_{m}", [f.get(f"{s}_{m}") for f in finals]).items()},
            "steps_to_reference_final_acc": reach,
            "mean_step_seconds": step_mean, "mean_step_seconds_std": step_std,
            "peak_memory_mb": mem_mean, "peak_memory_mb_std": mem_std,
            "step_time_ratio": same_machine_ratio(mine, ref_cells, "mean_step_seconds"),
            "peak_memory_ratio": same_machine_ratio(mine, ref_cells, "peak_memory_mb"),
            "ratio_cells": sum(_machine_key(c) in {_machine_key(r) for r in ref_cells} for c in mine),
            "train_seconds": mean_std([c["train_seconds"] for c in mine])[0],
            "test_acc_curve": curve, "test_comp_curve": _curve(mine, "test_comp"),
            "final_diagnostics": {k: {"mean": mean_std(v)[0], "std": mean_std(v)[1], "n": len(v)}
                                  for k, v in sorted(diagnostics.items())},
            "run_diagnostics": {header: _ms("value", [cell_diagnostic(c, key, reduce) for c in mine])
                                for header, key, reduce in DIAGNOSTIC_COLUMNS},
        }
    summary["reference_final_test_acc"] = ref_final
    return summary


def _machine_key(cell: dict) -> str:
    return json.dumps(cell.get("machine"), sort_keys=True)


def same_machine_ratio(cells: list[dict], ref_cells: list[dict], key: str) -> float | None:
    """Mean over ``cells`` of ``cell[key]`` / the reference's mean on the same machine.

    Cells of one matrix may run sessions apart on different machines (AVX2 vs AVX512 kernels differ ~1.3x in step
    time), so a ratio across machines would measure the machines; a cell on a machine where the reference has no
    cell is left out. On one machine this is mean(cells) / mean(reference), as before."""
    ref_by_machine: dict[str, list[float]] = {}
    for r in ref_cells:
        if r.get(key) is not None:
            ref_by_machine.setdefault(_machine_key(r), []).append(r[key])
    ratios = [c[key] / mean_std(ref_by_machine[_machine_key(c)])[0] for c in cells
              if c.get(key) is not None and _machine_key(c) in ref_by_machine
              and mean_std(ref_by_machine[_machine_key(c)])[0]]
    return mean_std(ratios)[0]


def _ms(name: str, values) -> dict:
    mean, std = mean_std([v for v in values if v is not None])
    return {name: mean, f"{name}_std": std}


def _pm(mean, std, digits: int = 1) -> str:
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_table(exp: Experiment, summary: dict) -> str:
    """The paper-style Markdown table (percentages; ratios to the reference method)."""
    ref = summary["reference_method"] or exp.reference_method
    extra = [f"{s}_{m}" for s in exp.eval.extra_splits for m in ("acc", "comp")]
    headers = ["method", "n", "test Acc.", "test Comp.", "Δ Acc. vs base", f"Δ Acc. vs {ref}, paired", "train Acc.",
               *(f"{k.rsplit('_', 1)[0]} {'Acc.' if k.endswith('acc') else 'Comp.'}" for k in extra),
               f"steps to {ref}'s final test Acc.", f"step time ×{ref}", f"peak memory ×{ref}"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] * len(headers)) + "|"]
    b = summary["base"]
    lines.append("| " + " | ".join(["base model (step 0)", str(b["n"]), _pm(b["test_acc"], b["test_acc_std"]),
                                    _pm(b["test_comp"], b["test_comp_std"]), "–", "–",
                                    _pm(b["train_acc"], b["train_acc_std"]),
                                    *(_pm(b[k], b[f"{k}_std"]) for k in extra), "–", "–", "–"]) + " |")
    for m, s in summary["methods"].items():
        delta = "–" if s["delta_acc"] is None else f"{s['delta_acc']:+.1f}"
        reach = "–" if summary["reference_final_test_acc"] is None else (
            f"not reached in {exp.max_steps}" if s["steps_to_reference_final_acc"] is None
            else str(s["steps_to_reference_final_acc"]))
        ratio = lambda r: "–" if r is None else f"{r:.2f}"  # noqa: E731
        lines.append("| " + " | ".join([m, str(s["n"]), _pm(s["test_acc"], s["test_acc_std"]),
                                        _pm(s["test_comp"], s["test_comp_std"]), delta, _paired(s),
                                        _pm(s["train_acc"], s["train_acc_std"]),
                                        *(_pm(s[k], s[f"{k}_std"]) for k in extra), reach,
                                        ratio(s["step_time_ratio"]), ratio(s["peak_memory_ratio"])]) + " |")
    return "\n".join(lines)


def _paired(s: dict) -> str:
    if not s.get("paired_n"):
        return "–"
    mean, std = s["paired_delta_acc"], s["paired_delta_acc_std"]
    value = f"{mean:+.1f}" if std is None else f"{mean:+.1f} ± {std:.1f}"
    return f"{value} ({s['paired_above']}↑ {s['paired_below']}↓ of {s['paired_n']})"


def format_diagnostics(summary: dict) -> str:
    """The trainer's diagnostics per method (mean ± std over its cells), the columns some method logged."""
    methods = summary["methods"]
    columns = [h for h, _, _ in DIAGNOSTIC_COLUMNS
               if any(s["run_diagnostics"][h]["value"] is not None for s in methods.values())]
    if not columns:
        return ""

    def fmt(d: dict) -> str:  # log-prob gaps and fractions need three decimals, counts and nats one
        return _pm(d["value"], d["value_std"], 3 if d["value"] is not None and abs(d["value"]) < 1 else 1)

    lines = ["| method | " + " | ".join(columns) + " |", "|" + "|".join(["---"] * (len(columns) + 1)) + "|"]
    lines += ["| " + " | ".join([m, *(fmt(s["run_diagnostics"][h]) for h in columns)]) + " |"
              for m, s in methods.items()]
    return "\n".join(lines)


def table_notes(exp: Experiment, summary: dict, cells: list[dict], missing) -> str:
    kinds = sorted({c.get("memory_kind", "rss") for c in cells})
    ns = sorted({s["n"] for s in summary["methods"].values()})
    notes = [
        f"Final step {exp.max_steps} (equal optimizer steps for every method); Acc./Comp. in %, greedy, plain prompt, "
        f"held-out tasks (eval.test_tasks={exp.eval.test_tasks}); n = cells (seeds × task sets) per row; "
        f"± is the sample standard deviation (ddof=1), shown only when n ≥ 2 (n here: {', '.join(map(str, ns))}).",
        "Δ Acc. vs base: mean over cells of (final − step-0) test Acc.; Δ Acc. vs the reference, paired: mean ± std "
        "over the seed:task-set pairs both ran of (method − reference) final test Acc., with how many pairs ended "
        "above (↑) and below (↓) it; steps to the reference's final Acc.: first evaluated step where the method's "
        "mean curve reaches the reference's final mean.",
        f"Ratios: each of the method's cells divided by the mean of the reference's cells on the same machine, "
        f"averaged over the method's cells (step time: training seconds per optimizer step, evaluation excluded; "
        f"memory: peak {'/'.join(kinds)} of the cell's process).",
    ]
    machines = sorted({json.dumps(c["machine"], sort_keys=True) for c in cells if c.get("machine")})
    if len(machines) > 1:
        described = "; ".join(_describe_machine(json.loads(m)) for m in machines)
        notes.append(f"The cells ran on {len(machines)} different machines ({described}): each step-time and memory "
                     "ratio compares a cell with the reference's cells on the same machine (a cell on a machine "
                     "without a reference cell is left out of the ratios); Acc. is comparable.")
    elif machines:
        notes.append(f"Machine: {_describe_machine(json.loads(machines[0]))}.")
    if missing:
        notes.append(f"Missing cells (not run or failed): {', '.join(f'{m}:{s}:{lv}' for m, s, lv in missing)}.")
    runs = {m: sorted((c["seed"], c["task_set"]) for c in cells if c["method"] == m) for m in summary["methods"]}
    if len({tuple(r) for r in runs.values()}) > 1:  # a mean over other seeds is not a comparison at equal seeds
        described = "; ".join(f"{m}: {', '.join(f'{s}:{lv}' for s, lv in r) or 'none'}" for m, r in runs.items())
        notes.append(f"The methods ran on different seeds (seed:task set — {described}): their means are not "
                     "comparable at equal seeds; compare the per-cell results of the seeds they share.")
    return "\n".join(f"- {n}" for n in notes)


def _describe_machine(m: dict) -> str:
    return f"{m.get('cpu')}, {m.get('cpus')} cores, torch CPU kernels {m.get('cpu_capability')}" + (
        f", GPU {m['gpu']}" if m.get("gpu") else "")


def write_curves(exp: Experiment, summary: dict, output_dir: Path) -> list[Path]:
    """Test Acc. vs step and vs training wall-clock (mean line, ±std band over cells), plus diagnostics if logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for filename, x_key, xlabel in ((CURVE_STEP_FILE, "step", "optimizer step"),
                                    (CURVE_TIME_FILE, "train_seconds", "training wall-clock (s, evaluation excluded)")):
        fig, ax = plt.subplots(figsize=(6.4, 4), dpi=100)
        for m, s in summary["methods"].items():
            curve = s["test_acc_curve"]
            xs = [r[x_key] for r in curve]
            ys = [r["mean"] for r in curve]
            line, = ax.plot(xs, ys, marker="o", markersize=3, label=f"{m} (n={s['n']})")
            if s["n"] >= 2:
                lo = [r["mean"] - (r["std"] or 0.0) for r in curve]
                hi = [r["mean"] + (r["std"] or 0.0) for r in curve]
                ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        if x_key == "step":
            integer_step_ticks(ax, [r["step"] for s in summary["methods"].values() for r in s["test_acc_curve"]])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test Acc. (%)")
        ax.set_title("Held-out test Acc. (mean ± std over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = output_dir / filename
        atomic_write(path, lambda f: fig.savefig(f, format="png"), binary=True)
        plt.close(fig)
        written.append(path)
    return written


def write_diagnostics(cells: list[dict], methods: list[str], output_dir: Path) -> Path | None:
    """diagnostics.png: per-step trainer diagnostics (mean over a method's cells), one panel per logged group."""
    panels = []
    for title, keys in DIAGNOSTIC_PANELS:
        present = [k for k in keys if any(k in s["log"] for c in cells for s in c["steps"])]
        if present:
            panels.append((title, present))
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(6.4, 2.6 * len(panels)), dpi=100, squeeze=False)
    for ax, (title, keys) in zip(axes[:, 0], panels):
        for m in methods:
            mine = [c for c in cells if c["method"] == m]
            for k in keys:
                steps = sorted({s["step"] for c in mine for s in c["steps"] if k in s["log"]})
                if not steps:
                    continue
                ys = [mean_std([s["log"][k] for c in mine for s in c["steps"] if s["step"] == st and k in s["log"]])[0]
                      for st in steps]
                ax.plot(steps, ys, marker="o", markersize=2, label=f"{m}: {k}")
        ax.set_title(title, fontsize=9)
        integer_step_ticks(ax, [s["step"] for c in cells for s in c["steps"]])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    axes[-1, 0].set_xlabel("optimizer step")
    fig.tight_layout()
    path = output_dir / DIAGNOSTICS_FILE
    atomic_write(path, lambda f: fig.savefig(f, format="png"), binary=True)
    plt.close(fig)
    return path


def aggregate(exp: Experiment, methods: list[str], seeds: list[int], task_sets: list[int]) -> dict:
    """results.json + table.md + PNG curves from the finished cells; prints the table."""
    cells, missing = load_results(exp, methods, seeds, task_sets)
    if not cells:
        raise ExperimentConfigError(f"no finished cell under {str(exp.output_dir / 'cells')!r} for methods "
                                    f"{', '.join(methods)}; run the experiment first.")
    summary = summarize(exp, cells, methods)
    table = format_table(exp, summary)
    notes = table_notes(exp, summary, cells, missing)
    diagnostics = format_diagnostics(summary)
    if diagnostics:
        notes += ("\n\nTrainer diagnostics, mean ± std over each method's cells of a cell's mean over the steps that "
                  "logged it (teacher metrics: steps where the teacher scored; coverage: the last step):\n\n" + diagnostics)
    out = exp.output_dir
    atomic_write(out / TABLE_FILE, lambda f: f.write(table + "\n\n" + notes + "\n"))
    pngs = write_curves(exp, summary, out)
    diag = write_diagnostics(cells, methods, out)
    atomic_write_json(out / RESULTS_FILE, {
        "experiment": {"config": str(exp.path), "base_recipe": str(exp.base_recipe), "methods": methods,
                       "seeds": seeds, "task_sets": task_sets, "max_steps": exp.max_steps,
                       "eval_every": exp.eval_every, "eval": vars(exp.eval), "summarizer_wait": exp.summarizer_wait,
                       "method_overrides": {m: exp.methods[m] for m in methods}, "shared_overrides": exp.overrides},
        "summary": summary, "missing": [list(c) for c in missing], "table_markdown": table, "cells": cells,
    })
    print("\n" + table + "\n\n" + notes + "\n")
    for path in [out / RESULTS_FILE, out / TABLE_FILE, *pngs, *([diag] if diag else [])]:
        print(f"wrote {path}")
    return summary
