"""Print a saved skill bank as a table: ``python -m skill_sd_trl.skills.show PATH [--task ID] [--full]``.

PATH is a ``skill_bank.json`` file or a checkpoint folder containing one. A bank saved with ``scope="scenario"`` is
listed per scenario (its first column), each skill's id naming the task it was written about.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .bank import SkillBank

_COLUMNS = ("task", "skill_id", "sel", "rollouts", "mean_r", "ucb", "src_r", "step", "summarizer", "golden_workflow")


def _one_line(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."


def format_bank(bank: SkillBank, task: str | None = None, full: bool = False, width: int = 60) -> str:
    """The bank as a fixed-width table (one row per skill, oldest first per task), with a stats line.

    ``task`` shows one bank key only: a task id, or a scenario for a bank with ``scope="scenario"`` (whose first
    column is then ``scenario``). ``full=True`` appends every skill's complete text after the table.
    """
    unit = "task" if bank.scope == "task" else bank.scope
    rows = []
    texts = []
    for key in sorted(bank.bank_keys()):
        if task is not None and key != task:
            continue
        scores = bank.ucb_scores(bank_key=key)
        for e in bank.entries(bank_key=key):
            mean = e.mean_reward
            ucb = scores[e.skill.skill_id]
            rows.append(
                (
                    _one_line(key, 24),
                    e.skill.skill_id,
                    str(e.selections),
                    str(e.reward_count),
                    "-" if mean is None else f"{mean:.3f}",
                    "untried" if math.isinf(ucb) else f"{ucb:.3f}",
                    f"{e.skill.reward:.3f}",
                    str(e.skill.step),
                    _one_line(e.skill.summarizer, 24),
                    _one_line(e.skill.golden_workflow, width),
                )
            )
            texts.append(f"--- {e.skill.skill_id} ---\n{e.skill.to_text()}")
    stats = bank.stats()
    header = (
        f"{stats['skills']} skill(s) over {stats['keys_with_skills']} {unit}(s); strategy={bank.strategy} "
        f"ucb_c={bank.ucb_c} capacity_per_task={bank.capacity_per_task} eviction={bank.eviction} scope={bank.scope}; "
        f"added={stats['added']} duplicates={stats['duplicates']} evicted={stats['evicted']} "
        f"selections={stats['selections']} outcomes={stats['outcomes']}"
    )
    if bank.scope != "task":
        header += (f"; tasks seen with skills={stats['tasks_with_skills']} "
                   f"cross_task_selections={stats['cross_task_selections']}")
    if not rows:
        return header + "\n(no skills" + (f" for {unit} {task!r})" if task is not None else ")")
    columns = (unit, *_COLUMNS[1:])
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = [header, "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if full:
        lines += [""] + texts
    return "\n".join(lines)


def load_bank(path: str | Path) -> SkillBank:
    """Load a bank from a ``skill_bank.json`` file or a checkpoint folder holding one."""
    path = Path(path)
    if path.is_dir():
        path = path / "skill_bank.json"
    if not path.is_file():
        raise FileNotFoundError(f"no skill bank at {path}; pass a skill_bank.json file or a checkpoint folder")
    return SkillBank.load(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skill_sd_trl.skills.show", description=__doc__.split("\n")[0])
    parser.add_argument("path", help="skill_bank.json or a checkpoint folder containing it")
    parser.add_argument("--task", default=None,
                        help="show only this task id (a scenario, for a bank saved with scope scenario)")
    parser.add_argument("--full", action="store_true", help="also print every skill's full text")
    parser.add_argument("--width", type=int, default=60, help="width of the golden_workflow column")
    args = parser.parse_args(argv)
    try:
        bank = load_bank(args.path)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_bank(bank, task=args.task, full=args.full, width=args.width))
    return 0


if __name__ == "__main__":
    sys.exit(main())
