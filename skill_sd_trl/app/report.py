"""Training curves as PNG from a run's ``trainer_state.json`` (for people who would rather look than read)."""

from __future__ import annotations

import json
import os
from pathlib import Path

# (file name, title, metric keys or prefixes/suffixes to plot)
PANELS = (
    ("reward.png", "Reward", ("reward",)),
    ("accuracy.png", "Acc. (episodes solved)", ("env/*/acc",)),
    ("completion.png", "Comp. (partial completion)", ("env/*/comp",)),
    ("sdl.png", "Self-distillation loss L_SDL", ("self_distillation/sdl",)),
    ("teacher_gap.png", "Teacher − student log-prob gap", ("teacher/logp_gap",)),
    ("skills.png", "Skills added to the bank", ("skills/added", "skills/bank_size")),
)


def find_log_history(run_dir: str | os.PathLike) -> list[dict]:
    """The log history of a run folder, or of its latest checkpoint when the run did not save its final state."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {str(run_dir)!r} not found.")
    candidates = [run_dir / "trainer_state.json"]
    checkpoints = sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
    candidates += [c / "trainer_state.json" for c in reversed(checkpoints)]
    for path in candidates:
        if path.exists():
            return json.loads(path.read_text(encoding="utf-8"))["log_history"]
    raise FileNotFoundError(f"no trainer_state.json in {str(run_dir)!r} or its checkpoints; was the run saved?")


def series(history: list[dict], pattern: str) -> dict[str, tuple[list[float], list[float]]]:
    """{metric name: (steps, values)} for an exact key or an ``env/*/acc``-style pattern."""
    prefix, _, suffix = pattern.partition("*")
    out: dict[str, tuple[list[float], list[float]]] = {}
    for entry in history:
        step = entry.get("step")
        for key, value in entry.items():
            matches = key == pattern if "*" not in pattern else (key.startswith(prefix) and key.endswith(suffix))
            if matches and isinstance(value, (int, float)) and step is not None:
                xs, ys = out.setdefault(key, ([], []))
                xs.append(step)
                ys.append(value)
    return out


#: Distinct styles, so that lines which overlap (e.g. GRPO and Skill-SD following each other) stay legible.
_STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1)), "v"), ((0, (1, 1)), "x"))


def integer_step_ticks(ax, steps) -> None:
    """Integer step ticks: every step when there are few (also for a single point), else integer-only locator."""
    from matplotlib.ticker import MaxNLocator

    steps = sorted(set(steps))
    if steps and len(steps) <= 20:
        ax.set_xticks(steps)
        ax.set_xlim(steps[0] - 0.5, steps[-1] + 0.5)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_panel(ax, title: str, data: dict[str, tuple[list[float], list[float]]]) -> None:
    """One panel: a line per metric, each in its own style, integer step ticks, legend outside the lines."""
    for k, (name, (xs, ys)) in enumerate(sorted(data.items())):
        linestyle, marker = _STYLES[k % len(_STYLES)]
        ax.plot(xs, ys, linestyle=linestyle, marker=marker, markersize=4, linewidth=1.6, alpha=0.85, label=name,
                zorder=3 + k)
    ax.set_title(title)
    ax.set_xlabel("training step")
    integer_step_ticks(ax, [x for xs, _ in data.values() for x in xs])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def plot_evaluation(ax, results: list[dict]) -> None:
    """The run's evaluation table (``eval_results.json``: base and trained model) as grouped bars of Acc./Comp."""
    models = [r["model"] for r in results]
    width = 0.38
    for k, (key, label) in enumerate((("acc", "Acc. %"), ("comp", "Comp. %"))):
        xs = [i + (k - 0.5) * width for i in range(len(models))]
        bars = ax.bar(xs, [r[key] for r in results], width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(range(len(models)), models, fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_title(f"Held-out evaluation ({results[0]['env']}/{results[0]['split']}, {results[0]['num_episodes']} episodes)")
    ax.legend(fontsize=8)


def write_report(run_dir: str | os.PathLike, output_dir: str | os.PathLike | None = None) -> list[str]:
    """Write one PNG per panel that has data (and ``evaluation.png`` when the run was evaluated); return the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = find_log_history(run_dir)
    output_dir = Path(output_dir or Path(run_dir) / "report")
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, title, patterns in PANELS:
        data = {}
        for pattern in patterns:
            data.update(series(history, pattern))
        if not data:
            continue
        fig, ax = plt.subplots(figsize=(7.5, 3.5), dpi=100)
        plot_panel(ax, title, data)
        fig.tight_layout()
        written.append(_save(fig, output_dir / filename, plt))
    evaluated = Path(run_dir) / "eval_results.json"
    if evaluated.is_file():
        results = json.loads(evaluated.read_text(encoding="utf-8"))["results"]
        if results:
            fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
            plot_evaluation(ax, results)
            fig.tight_layout()
            written.append(_save(fig, output_dir / "evaluation.png", plt))
    if not written:
        raise ValueError(f"the logs of {str(run_dir)!r} contain none of the plotted metrics (reward, env/*/acc, ...).")
    return written


def _save(fig, path: Path, plt) -> str:
    fig.savefig(path)
    plt.close(fig)
    return str(path)
