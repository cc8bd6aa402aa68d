"""Summarizer backends: trajectories of one task in, the raw text of one skill JSON object out.

All backends share one interface, :class:`Summarizer`: a ``name`` (stored in each skill's metadata) and
``summarize(trajectories, focus=None) -> str``. With ``focus`` (one trajectory of the task, the paper's
per-trajectory summary) the skill describes that trajectory, and ``trajectories`` (the task's other episodes of the
step; the focus may be among them) serve only as contrast. Without it the skill summarizes the whole group. The
caller parses the text with :func:`~skill_sd_trl.skills.schema.parse_skill` so every backend is held to the same
schema and every failure is counted in the same place.

The model-backed ones live in :mod:`~skill_sd_trl.skills.llm_summarizers`:

* :class:`TransformersSummarizer`: a local causal LM (path or model object + tokenizer), chat template, greedy.
* :class:`OpenAIChatSummarizer`: any OpenAI-compatible ``/chat/completions`` endpoint (vLLM, TGI, OpenAI, ...)
  through the ``openai`` SDK (its timeout and retries), structured JSON output where the server supports it.
* :class:`ExperienceSummarizer`: no model at all. It writes the skill from what the episodes show: the shortest
  successful action sequence seen so far for the task (kept across calls), the mistakes recorded by the
  environment (``Turn.valid``, ``Turn.info["events"]``) and what the episode (or the winning episodes) did. The
  offline default, and the baseline an LLM summarizer has to beat.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .events import EventVocabulary, vocabulary_for
from .llm_summarizers import OpenAIChatSummarizer, TransformersSummarizer
from .schema import MAX_FIELD_CHARS, SKILL_KEYS
from .summarizer import Summarizer, SummarizerError, _check_one_task, contrast_of
from .trajectory import Trajectory, Turn

__all__ = ["ExperienceSummarizer", "OpenAIChatSummarizer", "Summarizer", "SummarizerError", "TransformersSummarizer",
           "build_summarizer"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------
# Programmatic, experience-based summarizer
# --------------------------------------------------------------------------------------------------------------

_INVALID_ADVICE = "Answer with exactly the required action format; unparseable or refused actions waste turns."
_API_ADVICE = "Check the API name and its arguments against the API docs before calling; read the error message."
_STEP_CHARS = 300  # one workflow step (e.g. a code cell) is clipped to this


def turn_actions(turn: Turn) -> list[str]:
    """The actions a turn applied: ``info["actions"]`` when the environment reports them, else the raw action
    text of a valid turn (generic environments), else nothing."""
    actions = turn.info.get("actions") if isinstance(turn.info, dict) else None
    if isinstance(actions, list):
        return [str(a).strip() for a in actions if str(a).strip()]
    if turn.valid and turn.action.strip():
        return [turn.action.strip()]
    return []


def trajectory_actions(traj: Trajectory) -> list[str]:
    return [a for turn in traj.turns for a in turn_actions(turn)]


def _events(turn: Turn) -> list[str]:
    events = turn.info.get("events") if isinstance(turn.info, dict) else None
    return [str(e) for e in events] if isinstance(events, list) else []


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _run_length(actions: Sequence[str]) -> list[str]:
    """Consecutive repeats of short actions become ``"Up x3"``; long actions (code) stay one per step."""
    steps: list[str] = []
    i = 0
    while i < len(actions):
        j = i
        while j + 1 < len(actions) and actions[j + 1] == actions[i] and len(actions[i]) <= 40:
            j += 1
        count = j - i + 1
        steps.append(_clip(actions[i], _STEP_CHARS) + (f" x{count}" if count > 1 else ""))
        i = j + 1
    return steps


def _numbered(steps: Sequence[str], budget: int) -> str:
    lines: list[str] = []
    used = 0
    for k, step in enumerate(steps, 1):
        line = f"{k}. {step}"
        if used + len(line) + 1 > budget - 40:
            lines.append(f"... ({len(steps) - k + 1} more steps)")
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(lines)


def _counts(counter: Counter, limit: int = 6) -> str:
    return ", ".join(f"{name} x{n}" if n > 1 else name for name, n in counter.most_common(limit))


@dataclass
class TaskMemory:
    """What :class:`ExperienceSummarizer` remembers about one task across calls."""

    episodes: int = 0
    successes: int = 0
    best_success_actions: list[str] | None = None
    best_success_reward: float = 0.0
    best_success_step: int = 0
    best_attempt_actions: list[str] = field(default_factory=list)
    best_attempt_completion: float = -1.0  # -1: no unsolved attempt recorded yet
    best_attempt_reward: float = 0.0


class ExperienceSummarizer(Summarizer):
    """Writes the skill JSON from the episodes alone (no model, no ground truth).

    * ``golden_workflow``: the shortest successful action sequence seen so far for the task (remembered across
      calls, ties keep the earlier one; with a ``focus``, the contrast episodes count as seen); before any success,
      the best attempt so far (highest completion, then reward) up to its last progress event.
    * ``mistake_analysis``: with a ``focus``, that episode's own mistakes: invalid turns (``Turn.valid`` false or an
      ``invalid_action`` event), the environment's mistake events (``events``, e.g. Sokoban's dead corners), API errors
      (``api_error: <message>``), and how it ended if unsolved. Without, the same over the episodes of this call.
    * ``success_analysis``: with a ``focus``, what that episode did (solved or not, its actions, its progress) and
      how the contrast episodes compare; without, how many episodes succeeded, their move counts, the shortest
      winner's actions, the most used actions and the progress events of the winners.

    ``events`` maps an environment name to its :class:`~skill_sd_trl.skills.events.EventVocabulary` (what its turn
    events mean: progress, mistakes and advice); the app layer passes ``EnvSpec.events``. Unknown environments get
    the generic vocabulary (``solved`` is progress; invalid actions and API errors are always understood).

    Memory counters (``episodes``, ``successes``) count each trajectory once: with a ``focus`` only the focus is
    counted (the contrast episodes are counted by their own calls).

    The output is deterministic for a given memory and input, so an unchanged situation produces a duplicate
    that the bank rejects instead of a near-copy.
    """

    name = "experience"

    def __init__(self, max_field_chars: int = MAX_FIELD_CHARS - 100,
                 events: Mapping[str, EventVocabulary] | None = None):
        self.max_field_chars = max_field_chars
        self.events = {str(k).lower(): v for k, v in (events or {}).items() if v is not None}
        self._memory: dict[str, TaskMemory] = {}
        self._lock = threading.Lock()

    # -- memory ---------------------------------------------------------------------------------------------
    def memory(self, task_id: str) -> TaskMemory | None:
        with self._lock:
            mem = self._memory.get(task_id)
            return None if mem is None else TaskMemory(**asdict(mem))

    def state_dict(self) -> dict[str, Any]:
        with self._lock:
            return {"version": 1, "tasks": {tid: asdict(m) for tid, m in self._memory.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != 1:
            raise ValueError(f"unsupported ExperienceSummarizer state version {state.get('version')!r}; expected 1")
        with self._lock:
            self._memory = {tid: TaskMemory(**m) for tid, m in state["tasks"].items()}

    def _update(self, mem: TaskMemory, trajectories: Sequence[Trajectory], vocab: EventVocabulary,
                count: bool = True) -> None:
        """Record the episodes: the best success / attempt (idempotent: seeing an episode twice changes nothing) and,
        when ``count``, the episode and success counters."""
        for traj in trajectories:
            mem.episodes += int(count)
            actions = trajectory_actions(traj)
            if traj.success:
                mem.successes += int(count)
                if mem.best_success_actions is None or len(actions) < len(mem.best_success_actions):
                    mem.best_success_actions = actions
                    mem.best_success_reward = float(traj.reward)
                    mem.best_success_step = int(traj.step)
            elif (traj.completion, traj.reward) > (mem.best_attempt_completion, mem.best_attempt_reward):
                mem.best_attempt_completion = float(traj.completion)
                mem.best_attempt_reward = float(traj.reward)
                mem.best_attempt_actions = self._progress_prefix(traj, vocab)

    @staticmethod
    def _progress_prefix(traj: Trajectory, vocab: EventVocabulary) -> list[str]:
        """Actions up to the last turn with a progress event: what came after did not help."""
        last = -1
        for i, turn in enumerate(traj.turns):
            if any(e in vocab.progress for e in _events(turn)):
                last = i
        turns = traj.turns if last < 0 else traj.turns[: last + 1]
        return [a for turn in turns for a in turn_actions(turn)]

    # -- the three fields -------------------------------------------------------------------------------------
    def _golden_workflow(self, mem: TaskMemory, vocab: EventVocabulary) -> str:
        budget = self.max_field_chars
        if mem.best_success_actions is not None:
            head = (
                f"Shortest solution seen so far ({len(mem.best_success_actions)} actions, reward "
                f"{mem.best_success_reward:.2f}, from step {mem.best_success_step}):"
            )
            if not mem.best_success_actions:
                return head + "\n1. (the task was solved without any action)"
            if vocab.answer_syntax is not None:  # the answer that plays it, as the agent writes answers
                answer = vocab.answer_syntax(mem.best_success_actions)
                if len(head) + 1 + len(answer) <= budget:
                    return head + "\n" + answer
            return head + "\n" + _numbered(_run_length(mem.best_success_actions), budget - len(head))
        head = (
            f"No episode has solved this task yet ({mem.episodes} seen). Best attempt so far (completion "
            f"{max(mem.best_attempt_completion, 0.0):.0%}, reward {mem.best_attempt_reward:.2f})"
        )
        if not mem.best_attempt_actions:
            return head + ": no useful action yet. Start by making one valid move that makes progress."
        head += ", up to its last progress:"
        tail = "\nThen continue from there and avoid the mistakes listed."
        return head + "\n" + _numbered(_run_length(mem.best_attempt_actions), budget - len(head) - len(tail)) + tail

    def _mistake_analysis(self, trajectories: Sequence[Trajectory], vocab: EventVocabulary, single: bool = False) -> str:
        """``single``: the one trajectory given is the focus episode, worded as "this episode"."""
        n = len(trajectories)

        def where(episodes: set[int]) -> str:
            return "" if single else f" in {len(episodes)} of {n} episode(s)"

        invalid_turns = 0
        invalid_eps: set[int] = set()
        invalid_example = ""
        tag_count: Counter = Counter()
        tag_eps: dict[str, set[int]] = {}
        tag_example: dict[str, str] = {}
        api_errors: Counter = Counter()
        other: Counter = Counter()
        endings: Counter = Counter()
        for k, traj in enumerate(trajectories):
            if not traj.success:
                endings[traj.stop_reason] += 1
            for t, turn in enumerate(traj.turns, 1):
                events = _events(turn)
                if not turn.valid or "invalid_action" in events:
                    invalid_turns += 1
                    invalid_eps.add(k)
                    invalid_example = invalid_example or _clip(turn.action, 80)
                for event in events:
                    if event == "invalid_action" or event in vocab.progress:
                        continue
                    if event.startswith("api_error"):
                        api_errors[_clip(event.partition(":")[2].strip() or "unknown", 120)] += 1
                    elif event in vocab.mistakes:
                        tag_count[event] += 1
                        tag_eps.setdefault(event, set()).add(k)
                        if event not in tag_example:
                            acts = turn_actions(turn)
                            tag_example[event] = f"at turn {t}" + (f" after '{_clip(acts[-1], 60)}'" if acts else "")
                    elif not traj.success:
                        other[_clip(event, 60)] += 1
        parts: list[str] = []
        if invalid_turns:
            example = f" (e.g. {invalid_example!r})" if invalid_example else ""
            parts.append(
                f"Invalid or unparseable actions: {invalid_turns} turn(s){where(invalid_eps)}{example}. {_INVALID_ADVICE}"
            )
        for tag in (t for t in vocab.mistakes if t in tag_count):  # most harmful first
            count = tag_count[tag]
            what, advice = vocab.mistakes[tag]
            parts.append(f"{what}: {count} time(s){where(tag_eps[tag])}, first {tag_example[tag]}. {advice}")
        if api_errors:
            parts.append(f"API errors ({sum(api_errors.values())}): {_counts(api_errors, 4)}. {_API_ADVICE}")
        if other:
            parts.append(f"Other events in {'this unsolved episode' if single else 'unsolved episodes'}: {_counts(other)}.")
        if endings and single:
            parts.append(f"This episode ended without solving the task: {_counts(endings)}.")
        elif endings:
            parts.append(f"Unsolved episodes ({sum(endings.values())} of {n}) ended by: {_counts(endings)}.")
        if not parts:
            if single:
                return "No invalid actions or harmful events in this episode; keep the same discipline."
            return f"No invalid actions or harmful events in the {n} episode(s) shown; keep the same discipline."
        return _clip_block("\n".join(f"- {p}" for p in parts), self.max_field_chars)

    def _success_analysis(self, trajectories: Sequence[Trajectory], mem: TaskMemory, vocab: EventVocabulary) -> str:
        n = len(trajectories)
        winners = [t for t in trajectories if t.success]
        if winners:
            moves = [len(trajectory_actions(t)) for t in winners]
            shortest = min(winners, key=lambda t: len(trajectory_actions(t)))
            used: Counter = Counter(a for t in winners for a in trajectory_actions(t) if len(a) <= 40)
            progress: Counter = Counter(
                e for t in winners for turn in t.turns for e in _events(turn) if e in vocab.progress
            )
            turns = [len(t.turns) for t in winners]
            text = (
                f"{len(winners)} of {n} episode(s) solved the task, with {_span(moves)} actions "
                f"(mean {sum(moves) / len(moves):.1f}) in {_span(turns)} turns. The shortest winner played: "
                f"{_clip(', '.join(_run_length(trajectory_actions(shortest))), 600) or '(no action)'}."
            )
            if used:
                text += f" Most used actions: {_counts(used, 4)}."
            if progress:
                text += f" Progress along the way: {_counts(progress)}."
            clean = [t for t in winners if all(turn.valid for turn in t.turns)]
            if len(clean) == len(winners):
                text += " Every winning turn was a valid action."
            return _clip_block(text, self.max_field_chars)
        best = max(trajectories, key=lambda t: (t.completion, t.reward))
        progress = Counter(e for turn in best.turns for e in _events(turn) if e in vocab.progress)
        text = (
            f"None of the {n} episode(s) here solved the task. The best reached completion {best.completion:.0%} "
            f"with reward {best.reward:.2f}" + (f" ({_counts(progress)})" if progress else "") + "."
        )
        if mem.best_success_actions is not None:
            text += (
                f" An earlier episode did solve it in {len(mem.best_success_actions)} actions: follow the golden "
                "workflow."
            )
        return _clip_block(text, self.max_field_chars)

    def _focus_analysis(self, focus: Trajectory, contrast: Sequence[Trajectory], mem: TaskMemory,
                        vocab: EventVocabulary) -> str:
        """What the focus episode did, then how the contrast episodes of its group compare."""
        actions = trajectory_actions(focus)
        played = _clip(", ".join(_run_length(actions)), 600) or "(no action)"
        progress = Counter(e for turn in focus.turns for e in _events(turn) if e in vocab.progress)
        turns = len(focus.turns)
        if focus.success:
            text = (
                f"This episode solved the task with {len(actions)} actions in {turns} turns (reward "
                f"{focus.reward:.2f}). It played: {played}."
            )
            if progress:
                text += f" Progress along the way: {_counts(progress)}."
            if all(turn.valid for turn in focus.turns):
                text += " Every turn was a valid action."
        else:
            text = (
                f"This episode did not solve the task: it reached completion {focus.completion:.0%} with reward "
                f"{focus.reward:.2f} in {turns} turns" + (f" ({_counts(progress)})" if progress else "")
                + f". It played: {played}."
            )
        winners = [t for t in contrast if t.success]
        if contrast:
            m = len(contrast)
            if winners:
                moves = [len(trajectory_actions(t)) for t in winners]
                text += f" For contrast, {len(winners)} of the {m} other episode(s) solved it, with {_span(moves)} actions."
                if focus.success and min(moves) < len(actions):
                    text += " A shorter solution exists: prefer the golden workflow."
            else:
                best = max(contrast, key=lambda t: (t.completion, t.reward))
                text += (
                    f" For contrast, none of the {m} other episode(s) solved it (best completion "
                    f"{best.completion:.0%})."
                )
        if not focus.success and not winners and mem.best_success_actions is not None:
            text += (
                f" An earlier episode did solve it in {len(mem.best_success_actions)} actions: follow the golden "
                "workflow."
            )
        elif not focus.success and winners:
            text += " Follow the golden workflow."
        return _clip_block(text, self.max_field_chars)

    def summarize(self, trajectories: Sequence[Trajectory], focus: Trajectory | None = None) -> str:
        _check_one_task(trajectories, focus)
        task_id = (focus or trajectories[0]).task_id
        vocab = vocabulary_for((focus or trajectories[0]).env_name, self.events)
        with self._lock:
            mem = self._memory.setdefault(task_id, TaskMemory())
            if focus is None:
                self._update(mem, trajectories, vocab)
                skill = {
                    "success_analysis": self._success_analysis(trajectories, mem, vocab),
                    "mistake_analysis": self._mistake_analysis(trajectories, vocab),
                    "golden_workflow": self._golden_workflow(mem, vocab),
                }
            else:
                contrast = contrast_of(trajectories, focus)
                self._update(mem, [focus], vocab)
                self._update(mem, contrast, vocab, count=False)  # their winners may be the golden workflow already
                skill = {
                    "success_analysis": self._focus_analysis(focus, contrast, mem, vocab),
                    "mistake_analysis": self._mistake_analysis([focus], vocab, single=True),
                    "golden_workflow": self._golden_workflow(mem, vocab),
                }
        assert tuple(skill) == SKILL_KEYS
        return json.dumps(skill, ensure_ascii=False, indent=2)


def _span(values: Sequence[int]) -> str:
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _clip_block(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def build_summarizer(kind: str, **kwargs: Any) -> Summarizer:
    """Construct a backend by name: ``"experience"``, ``"transformers"`` or ``"openai"``."""
    kinds = {
        "experience": ExperienceSummarizer,
        "transformers": TransformersSummarizer,
        "openai": OpenAIChatSummarizer,
    }
    if kind not in kinds:
        raise ValueError(f"unknown summarizer {kind!r}; choose one of {sorted(kinds)}")
    return kinds[kind](**kwargs)
