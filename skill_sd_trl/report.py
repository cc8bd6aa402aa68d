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


def write_report(run_dir: str | os.PathLike, output_dir: str | os.PathLike | None = None) -> list[str]:
    """Write one PNG per panel that has data; return their paths."""
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
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        for name, (xs, ys) in sorted(data.items()):
            ax.plot(xs, ys, marker="o", markersize=3, label=name)
        ax.set_title(title)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = output_dir / filename
        fig.savefig(path)
        plt.close(fig)
        written.append(str(path))
    if not written:
        raise ValueError(f"the logs of {str(run_dir)!r} contain none of the plotted metrics (reward, env/*/acc, ...).")
    return written
