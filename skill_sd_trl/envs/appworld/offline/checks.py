"""Unit-test machinery for offline tasks: state diffs, answer matching, and the per-task test recorder.

A task's tests are a function ``check(t: Checker)`` that inspects the database state before the agent acted
(``t.before``), after (``t.after``) and the answer passed to ``complete_task`` (``t.answer``), recording one
named requirement per :meth:`Checker.case`. Tests cover what must change, what must not change (collateral
damage) and the answer. The result has the same shape as the real AppWorld's evaluation output.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

State = dict[str, list[dict[str, Any]]]

# Tables that change as a side effect of normal use, and columns that reading changes (opening an email).
VOLATILE_TABLES = frozenset({"access_tokens", "task_state", "meta"})
VOLATILE_COLUMNS = {"emails": ("is_read",)}
_KEYS = {"accounts": "app", "payment_users": "email", "meta": "key", "access_tokens": "token"}


@dataclass
class TableDiff:
    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    changed: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)  # (before, after)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def _strip(table: str, row: dict[str, Any]) -> dict[str, Any]:
    drop = VOLATILE_COLUMNS.get(table, ())
    return {k: v for k, v in row.items() if k not in drop}


def diff_table(before: State, after: State, table: str) -> TableDiff:
    """Rows added, removed and changed in ``table`` (matched by primary key, volatile columns ignored)."""
    key = _KEYS.get(table, "id")
    old = {row[key]: _strip(table, row) for row in before[table]}
    new = {row[key]: _strip(table, row) for row in after[table]}
    return TableDiff(
        added=[new[k] for k in new if k not in old],
        removed=[old[k] for k in old if k not in new],
        changed=[(old[k], new[k]) for k in old if k in new and old[k] != new[k]],
    )


def _number(text: str) -> float | None:
    cleaned = text.strip().replace("$", "").replace(",", "")
    try:
        return float(cleaned)
    except ValueError:
        return None


def normalize_answer(value: Any) -> Any:
    """Canonical form for comparing answers: numbers rounded to cents, strings case- and space-folded."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return round(float(value), 2)
    if isinstance(value, str):
        number = _number(value)
        if number is not None:
            return round(number, 2)
        return re.sub(r"\s+", " ", value.strip().rstrip(".").lower())
    if isinstance(value, (list, tuple)):
        return sorted((normalize_answer(v) for v in value), key=repr)
    return value


def answers_match(predicted: Any, expected: Any) -> bool:
    return normalize_answer(predicted) == normalize_answer(expected)


@dataclass
class TestResult:
    requirement: str
    passed: bool
    trace: str = ""


class Checker:
    """Records the outcome of each requirement of one task's tests."""

    def __init__(self, before: State, after: State, answer: Any, completed: bool) -> None:
        self.before = before
        self.after = after
        self.answer = answer
        self.completed = completed
        self.results: list[TestResult] = []

    def case(self, requirement: str, passed: bool, trace: str = "") -> bool:
        self.results.append(TestResult(requirement, bool(passed), "" if passed else trace))
        return bool(passed)

    def diff(self, table: str) -> TableDiff:
        return diff_table(self.before, self.after, table)

    def answer_is(self, expected: Any) -> bool:
        return self.case(f"the answer given to complete_task is {expected!r}", answers_match(self.answer, expected),
                         f"expected {expected!r}, got {self.answer!r}")

    def no_answer(self) -> bool:
        return self.case("complete_task is called without an answer (the task asks no question)",
                         self.answer is None, f"expected no answer, got {self.answer!r}")

    def only_tables_changed(self, *tables: str) -> bool:
        """Collateral damage check: nothing outside ``tables`` (and volatile bookkeeping) changed."""
        changed = [t for t in self.before if t not in VOLATILE_TABLES and t not in tables
                   and not self.diff(t).empty]
        allowed = ", ".join(tables) if tables else "nothing"
        return self.case(f"no app data other than [{allowed}] is changed", not changed,
                         f"unexpected changes in: {', '.join(changed)}")

    def table(self, name: str, when: str = "after") -> list[dict[str, Any]]:
        return (self.after if when == "after" else self.before)[name]

    def user(self) -> dict[str, Any]:
        return self.before["profile"][0]


def load_answer(task_state_row: dict[str, Any]) -> Any:
    raw = task_state_row.get("answer")
    return None if raw is None else json.loads(raw)


def results_to_report(results: list[TestResult], no_op_passes: set[str], difficulty: int) -> dict[str, Any]:
    """The evaluation payload, shaped like the real AppWorld server's ``/evaluate`` output."""

    def label(requirement: str) -> str:
        return "no_op_pass" if requirement in no_op_passes else "no_op_fail"

    passes = [{"requirement": r.requirement, "label": label(r.requirement)} for r in results if r.passed]
    failures = [{"requirement": r.requirement, "trace": r.trace, "label": label(r.requirement)}
                for r in results if not r.passed]
    return {"success": not failures and bool(results), "difficulty": difficulty, "num_tests": len(results),
            "passes": passes, "failures": failures}
