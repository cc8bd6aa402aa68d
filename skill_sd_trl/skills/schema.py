"""The skill record and its parser.

A skill is what an auxiliary summarizer writes after reading a task's trajectories: one JSON object with exactly
three string fields, ``success_analysis``, ``mistake_analysis`` and ``golden_workflow``. The teacher sees it (via
:meth:`Skill.to_text`), the student never does.

Parsing policy (:func:`parse_skill`):

* **Strict about the schema.** The three keys are required; any other key is rejected (an LLM that invents keys is
  not following the prompt, and a silently dropped key could hide the real content). Values must be non-empty
  strings after trimming; ``golden_workflow`` may also be a non-empty list of non-empty strings, normalised to a
  numbered list. Each field is capped at ``max_field_chars``.
* **Forgiving about the wrapping.** The object may sit inside ```json fences or prose, may have a trailing comma,
  and may contain raw newlines/tabs inside strings. The first balanced ``{...}`` that parses as JSON and mentions one
  of the three keys is the skill.
* **One object, nothing else.** A skill is one JSON object. If that first object sits inside a JSON array (``[{...}]``
  at top level, inside a code fence, or after an unclosed ``[``), the output is refused: a list of skills, or a list
  wrapping one, is not what the summarizer was asked for, and silently taking its first element would hide the rest.
* **Safe on hostile input.** Inputs above ``max_input_chars`` are refused before any scanning, nesting deeper than
  ``max_depth`` is refused before ``json.loads`` sees it (no RecursionError), control characters other than newline
  and tab are stripped from values, and field text is never interpreted: prompt-injection text is just text.

Anything else raises :class:`SkillParseError` with a reason, so callers can count the failure; a half-valid skill
is never returned.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SKILL_KEYS: tuple[str, ...] = ("success_analysis", "mistake_analysis", "golden_workflow")
SECTION_TITLES: dict[str, str] = {
    "success_analysis": "What worked",
    "mistake_analysis": "Mistakes to avoid",
    "golden_workflow": "Golden workflow",
}

MAX_INPUT_CHARS = 200_000
MAX_FIELD_CHARS = 4_000
MAX_DEPTH = 16
MAX_CANDIDATES = 32  # balanced objects tried per input; bounds the work on adversarial text

# C0/C1 control characters except \t and \n; \r is folded into \n first.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_WS_RE = re.compile(r"\s+")


class SkillParseError(ValueError):
    """The summarizer output is not a valid skill. ``reason`` says why (stable enough to count by)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Skill:
    """One skill: the three analysis fields plus where it came from.

    ``skill_id`` is assigned by the :class:`~skill_sd_trl.skills.bank.SkillBank` when the skill is stored.
    """

    success_analysis: str
    mistake_analysis: str
    golden_workflow: str
    task_id: str = ""
    reward: float = 0.0  # reward of the best source trajectory
    step: int = 0  # training step of the source trajectories
    summarizer: str = ""  # name of the summarizer (model) that wrote it
    created: float = field(default_factory=time.time)  # unix time
    skill_id: str = ""

    def to_text(self) -> str:
        """The skill as it appears in the teacher's prompt: one headed section per field."""
        parts = ["## Skill from past attempts at this task"]
        for key in SKILL_KEYS:
            parts.append(f"### {SECTION_TITLES[key]}\n{getattr(self, key).strip()}")
        return "\n\n".join(parts)

    def content(self) -> dict[str, str]:
        """The three schema fields only (what the summarizer wrote)."""
        return {key: getattr(self, key) for key in SKILL_KEYS}

    def normalized_key(self) -> str:
        """Text used for de-duplication: the three fields, case-folded, whitespace collapsed."""
        return "\x1f".join(_WS_RE.sub(" ", getattr(self, key)).strip().casefold() for key in SKILL_KEYS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Skill":
        """Rebuild a skill from :meth:`to_dict` output; the three fields are validated like parsed output."""
        if not isinstance(data, Mapping):
            raise SkillParseError(f"a skill must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SkillParseError(f"unknown skill fields {unknown}; expected a subset of {sorted(known)}")
        content = validate_skill_fields({k: data.get(k) for k in SKILL_KEYS if k in data})
        meta = {k: v for k, v in data.items() if k not in SKILL_KEYS}
        try:
            skill = cls(**content, **meta)
            skill.reward = float(skill.reward)
            skill.step = int(skill.step)
            skill.created = float(skill.created)
        except (TypeError, ValueError) as exc:
            raise SkillParseError(f"bad skill metadata: {exc}") from exc
        if not isinstance(skill.task_id, str) or not isinstance(skill.summarizer, str) or not isinstance(
            skill.skill_id, str
        ):
            raise SkillParseError("skill fields task_id, summarizer and skill_id must be strings")
        return skill


def clean_text(value: str) -> str:
    """Fold CRLF, strip control characters (keeping newline and tab) and surrounding whitespace."""
    return _CONTROL_RE.sub("", value.replace("\r\n", "\n").replace("\r", "\n")).strip()


def _normalize_workflow(value: Any, max_field_chars: int) -> str:
    """``golden_workflow`` given as a list of steps becomes a numbered list."""
    if not isinstance(value, list):
        return value
    if not value:
        raise SkillParseError("field 'golden_workflow' is an empty list; give at least one step")
    steps = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise SkillParseError(
                f"field 'golden_workflow' item {i} is {type(item).__name__}; every step must be a string"
            )
        item = clean_text(item)
        if not item:
            raise SkillParseError(f"field 'golden_workflow' item {i} is empty")
        steps.append(f"{i + 1}. {item}")
        # Stop building early: a list of a million steps must not cost a million string joins.
        if sum(len(s) + 1 for s in steps) > max_field_chars:
            raise SkillParseError(f"field 'golden_workflow' is longer than {max_field_chars} characters")
    return "\n".join(steps)


def validate_skill_fields(
    obj: Mapping[str, Any], *, extra_keys: str = "reject", max_field_chars: int = MAX_FIELD_CHARS
) -> dict[str, str]:
    """Check a decoded object against the schema and return the three cleaned string fields.

    ``extra_keys="reject"`` (default) refuses unknown keys; ``"ignore"`` drops them.
    """
    if extra_keys not in ("reject", "ignore"):
        raise ValueError(f"extra_keys={extra_keys!r} is not supported; use 'reject' or 'ignore'")
    if not isinstance(obj, Mapping):
        raise SkillParseError(f"the skill must be a JSON object, got {type(obj).__name__}")
    missing = [k for k in SKILL_KEYS if k not in obj]
    if missing:
        raise SkillParseError(f"missing required key(s) {missing}; a skill needs exactly {list(SKILL_KEYS)}")
    extra = sorted(str(k)[:40] for k in obj if k not in SKILL_KEYS)
    if extra and extra_keys == "reject":
        raise SkillParseError(f"unexpected key(s) {extra[:5]}; a skill has exactly {list(SKILL_KEYS)}")
    out: dict[str, str] = {}
    for key in SKILL_KEYS:
        value = obj[key]
        if key == "golden_workflow":
            value = _normalize_workflow(value, max_field_chars)
        if not isinstance(value, str):
            raise SkillParseError(f"field {key!r} must be a string, got {type(value).__name__}")
        if len(value) > 4 * max_field_chars:  # cheap guard before cleaning a huge value
            raise SkillParseError(f"field {key!r} is longer than {max_field_chars} characters")
        value = clean_text(value)
        if not value:
            raise SkillParseError(f"field {key!r} is empty")
        if len(value) > max_field_chars:
            raise SkillParseError(f"field {key!r} is longer than {max_field_chars} characters ({len(value)})")
        out[key] = value
    return out


def _object_spans(text: str, max_depth: int) -> list[tuple[int, int, bool, bool]]:
    """``(begin, end, too_deep, in_array)`` of the outermost balanced ``{...}`` spans of ``text``, in order.

    One iterative, string-aware pass with an explicit stack: braces inside JSON strings do not count, any nesting
    costs O(n) and no recursion, and a stray unclosed ``{`` in prose does not hide a complete object after it
    (the object still closes on the stack, and the stray never does). ``in_array`` is true when a ``[`` was open
    around the object when it closed (an array element, or an object after a ``[`` that never closes).
    """
    stack: list[list[int]] = []  # [begin, is_brace, own depth, deepest depth below]
    spans: list[tuple[int, int, bool, bool]] = []
    open_brackets = 0  # "[" entries on the stack
    in_string = escape = False
    for i, ch in enumerate(text):
        if in_string:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = bool(stack)  # quotes in prose outside any object are just prose
        elif ch == "{" or ch == "[":
            depth = len(stack) + 1
            stack.append([i, ch == "{", depth, depth])
            open_brackets += ch == "["
        elif (ch == "}" or ch == "]") and stack:
            begin, is_brace, depth, deepest = stack.pop()
            open_brackets -= not is_brace
            if stack:
                stack[-1][3] = max(stack[-1][3], deepest)
            if is_brace and ch == "}":
                spans.append((begin, i + 1, deepest - depth + 1 > max_depth, open_brackets > 0))
    spans.sort(key=lambda s: (s[0], -s[1]))
    outermost: list[tuple[int, int, bool, bool]] = []
    last_end = -1
    for span in spans:
        if span[0] >= last_end:
            outermost.append(span)
            last_end = span[1]
    return outermost


def _strip_trailing_commas(candidate: str) -> str:
    """Remove commas directly before ``}`` or ``]`` outside strings (a common LLM slip)."""
    out: list[str] = []
    in_string = escape = False
    pending_comma = -1  # index in ``out`` of a comma that may turn out to be trailing
    for ch in candidate:
        if in_string:
            out.append(ch)
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_string = False
            continue
        if ch in "}]" and pending_comma >= 0:
            del out[pending_comma]
        if ch == ",":
            pending_comma = len(out)
        elif not ch.isspace():
            pending_comma = -1
        if ch == '"':
            in_string = True
        out.append(ch)
    return "".join(out)


def _decode(candidate: str) -> Any:
    for attempt in (candidate, _strip_trailing_commas(candidate)):
        try:
            # strict=False: raw newlines/tabs inside strings are accepted (models write them).
            return json.loads(attempt, strict=False)
        except (json.JSONDecodeError, RecursionError):
            continue
    raise ValueError("not JSON")


def _candidates(text: str, max_depth: int) -> Iterator[tuple[str, bool, bool]]:
    for begin, end, deep, in_array in _object_spans(text, max_depth)[:MAX_CANDIDATES]:
        yield text[begin:end], deep, in_array


def parse_skill(
    text: str,
    *,
    extra_keys: str = "reject",
    max_field_chars: int = MAX_FIELD_CHARS,
    max_input_chars: int = MAX_INPUT_CHARS,
    max_depth: int = MAX_DEPTH,
    **metadata: Any,
) -> Skill:
    """Parse a summarizer's raw output into a :class:`Skill` (metadata such as ``task_id`` passed through).

    Raises :class:`SkillParseError` with the reason when the output is not exactly one valid skill object: among
    others when the skill object is wrapped in a JSON array (``[{...}]``), fenced or not.
    """
    if not isinstance(text, str):
        raise SkillParseError(f"summarizer output must be a string, got {type(text).__name__}")
    if len(text) > max_input_chars:
        raise SkillParseError(f"output too long ({len(text)} characters > max_input_chars={max_input_chars})")
    if "{" not in text:
        raise SkillParseError("no JSON object found in the output")
    saw_object = saw_deep = False
    for candidate, too_deep, in_array in _candidates(text, max_depth):
        saw_object = True
        if too_deep:
            saw_deep = True
            continue
        try:
            obj = _decode(candidate)
        except ValueError:
            continue
        if isinstance(obj, dict) and any(k in obj for k in SKILL_KEYS):
            if in_array:
                raise SkillParseError(
                    "the skill is inside a JSON array; a skill must be one JSON object, not a list of objects"
                )
            content = validate_skill_fields(obj, extra_keys=extra_keys, max_field_chars=max_field_chars)
            return Skill(**content, **metadata)
    if saw_deep:
        raise SkillParseError(f"JSON nested deeper than max_depth={max_depth}")
    if not saw_object:
        raise SkillParseError("unterminated JSON object (the output looks truncated)")
    raise SkillParseError(f"no JSON object with the keys {list(SKILL_KEYS)} could be decoded")


def skill_to_json(skill: Skill) -> str:
    """The three fields as the JSON object a summarizer is asked to write."""
    return json.dumps(skill.content(), ensure_ascii=False, indent=2)
