"""Summarizer backends: trajectories of one task in, the raw text of one skill JSON object out.

All backends share one interface, :class:`Summarizer`: a ``name`` (stored in each skill's metadata) and
``summarize(trajectories, focus=None) -> str``. With ``focus`` (one trajectory of the task, the paper's
per-trajectory summary) the skill describes that trajectory, and ``trajectories`` (the task's other episodes of the
step; the focus may be among them) serve only as contrast. Without it the skill summarizes the whole group. The
caller parses the text with :func:`~skill_sd_trl.skills.schema.parse_skill` so every backend is held to the same
schema and every failure is counted in the same place.

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
import os
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..trajectory import Trajectory, Turn
from .events import EventVocabulary, vocabulary_for
from .prompts import PromptBook, PromptSpec, SummaryPrompt
from .schema import MAX_FIELD_CHARS, SKILL_KEYS

logger = logging.getLogger(__name__)


class SummarizerError(RuntimeError):
    """A backend failed to produce text (HTTP error, bad response, prompt too long...).

    ``retryable`` tells the caller whether trying again may help (timeouts, 429, 5xx) or not (401, bad JSON).
    """

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


def _check_one_task(trajectories: Sequence[Trajectory], focus: Trajectory | None = None) -> None:
    if not trajectories and focus is None:
        raise ValueError("summarize() needs at least one trajectory")
    task_ids = {t.task_id for t in trajectories} | ({focus.task_id} if focus is not None else set())
    if len(task_ids) > 1:
        raise ValueError(f"summarize() takes the trajectories of one task; got task ids {sorted(task_ids)[:5]}")


def contrast_of(trajectories: Sequence[Trajectory], focus: Trajectory | None) -> list[Trajectory]:
    """The trajectories other than ``focus`` (by identity: an identical twin of the focus is still contrast)."""
    return [t for t in trajectories if t is not focus]


class Summarizer(ABC):
    """Turns finished trajectories of one task into the raw text of one skill JSON object.

    ``summarize(trajectories, focus=None)``: with ``focus``, the skill describes that one trajectory (what it did,
    its mistakes) and ``trajectories``, the task's group (the focus may be among them), are contrast only. Without
    ``focus``, the skill summarizes the group. A subclass written for the older ``summarize(trajectories)`` still
    works with :class:`~skill_sd_trl.skills.callback.SkillSummarizerCallback`: in trajectory mode it receives the
    focus trajectory alone.
    """

    name: str = "summarizer"

    @abstractmethod
    def summarize(self, trajectories: Sequence[Trajectory], focus: Trajectory | None = None) -> str:
        """Return raw text expected to contain one skill JSON object (parsed and validated by the caller)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


class LLMSummarizer(Summarizer):
    """Common part of the model-backed summarizers: picking and rendering the prompt."""

    def __init__(self, prompt: PromptSpec = None, max_prompt_chars: int = 12000, max_trajectories: int = 4,
                 env_prompts: Mapping[str, SummaryPrompt] | None = None):
        if max_trajectories < 1:
            raise ValueError(f"max_trajectories={max_trajectories} must be >= 1")
        self.prompts = PromptBook(prompt, env_prompts)
        self.max_prompt_chars = max_prompt_chars
        self.max_trajectories = max_trajectories

    def build_messages(
        self, trajectories: Sequence[Trajectory], focus: Trajectory | None = None
    ) -> list[dict[str, str]]:
        """The chat prompt; with ``focus`` it asks for a skill about that episode, the others shown as contrast
        (at most ``max_trajectories`` episodes in all, focus included, within ``max_prompt_chars``)."""
        _check_one_task(trajectories, focus)
        template = self.prompts.for_env((focus or trajectories[0]).env_name)
        return template.render(
            trajectories, max_chars=self.max_prompt_chars, max_trajectories=self.max_trajectories, focus=focus
        )

    def summarize(self, trajectories: Sequence[Trajectory], focus: Trajectory | None = None) -> str:
        return self.complete(self.build_messages(trajectories, focus))

    @abstractmethod
    def complete(self, messages: list[dict[str, str]]) -> str:
        """Answer a chat conversation."""


# --------------------------------------------------------------------------------------------------------------
# Local transformers model
# --------------------------------------------------------------------------------------------------------------


class TransformersSummarizer(LLMSummarizer):
    """A local causal LM, greedy decoding.

    Args:
        model: a path/Hub id (loaded with ``AutoModelForCausalLM`` on ``device``) or a loaded model.
        tokenizer: required with a model object; loaded from the path otherwise.
        max_new_tokens: generation budget for the JSON answer.
        device: where a model loaded from a path goes (default ``"cpu"``); a model object is not moved.
        chat_template_kwargs: extra arguments for ``apply_chat_template`` (e.g. ``{"enable_thinking": False}``).
        generation_kwargs: extra arguments for ``generate`` (e.g. ``{"repetition_penalty": 1.1}``); they override
            the greedy defaults.

    Do not pass the model being trained: generation runs in a background thread, concurrently with training.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        max_new_tokens: int = 512,
        device: str = "cpu",
        chat_template_kwargs: Mapping[str, Any] | None = None,
        generation_kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        prompt: PromptSpec = None,
        max_prompt_chars: int = 12000,
        max_trajectories: int = 4,
        env_prompts: Mapping[str, SummaryPrompt] | None = None,
    ):
        super().__init__(prompt=prompt, max_prompt_chars=max_prompt_chars, max_trajectories=max_trajectories,
                         env_prompts=env_prompts)
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
        if isinstance(model, (str, os.PathLike)):
            from transformers import AutoModelForCausalLM, AutoTokenizer

            path = os.fspath(model)
            tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path).to(device)
            model.eval()
            default_name = path.rstrip("/").split("/")[-1]
        else:
            if tokenizer is None:
                raise ValueError("TransformersSummarizer: pass tokenizer=... together with a model object")
            default_name = str(getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__)
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.generation_kwargs = dict(generation_kwargs or {})
        self.name = name or f"transformers:{default_name}"
        self._lock = threading.Lock()  # one generate at a time on a shared model

    def _encode(self, messages: list[dict[str, str]]):
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            enc = tok.apply_chat_template(
                messages,
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                return_tensors="pt",
                **self.chat_template_kwargs,
            )
            return enc["input_ids"], enc.get("attention_mask")
        # No chat template (base models): a plain transcript ending where the answer starts.
        text = "\n\n".join(m["content"] for m in messages) + "\n\nJSON answer:\n"
        enc = tok(text, return_tensors="pt")
        return enc["input_ids"], enc.get("attention_mask")

    def complete(self, messages: list[dict[str, str]]) -> str:
        import torch

        input_ids, attention_mask = self._encode(messages)
        limit = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        if limit is not None and input_ids.shape[1] + self.max_new_tokens > limit:
            raise SummarizerError(
                f"prompt of {input_ids.shape[1]} tokens + max_new_tokens={self.max_new_tokens} exceeds the model's "
                f"{limit} positions; lower max_prompt_chars (now {self.max_prompt_chars}) or max_new_tokens"
            )
        device = next(self.model.parameters()).device
        input_ids = input_ids.to(device)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id
        with self._lock, torch.no_grad():
            kwargs = {"max_new_tokens": self.max_new_tokens, "do_sample": False, "pad_token_id": pad_id}
            kwargs.update(self.generation_kwargs)
            out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask.to(device), **kwargs)
        return self.tokenizer.decode(out[0, input_ids.shape[1]:], skip_special_tokens=True)


# --------------------------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP endpoint
# --------------------------------------------------------------------------------------------------------------

_RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIChatSummarizer(LLMSummarizer):
    """An OpenAI-compatible chat-completions endpoint (vLLM, TGI, OpenAI, ...) through the ``openai`` SDK
    (``pip install "skill-sd-trl[openai]"``).

    Args:
        base_url: e.g. ``"http://localhost:8000/v1"``.
        model: the model name sent in the request.
        api_key_env: environment variable holding the API key. ``None`` for servers without authentication.
        timeout: seconds one request may take.
        max_retries: the SDK's retries (exponential backoff, ``Retry-After`` honoured) on timeouts, connection
            errors, 408/409/429 and 5xx. This is the only retry layer: the skill callback does not retry on top.
        structured_output: ask for the skill JSON schema (``response_format`` ``json_schema``, strict). A server
            that refuses it (HTTP 400 naming ``response_format``) is asked again without, and never again after.
            The answer still goes through the strict schema check of :func:`~skill_sd_trl.skills.schema.parse_skill`.

    Other 4xx statuses and malformed responses raise a non-retryable :class:`SummarizerError`: they are
    configuration errors, and retrying would only hide them.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 120.0,
        max_retries: int = 3,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        structured_output: bool = True,
        extra_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        name: str | None = None,
        prompt: PromptSpec = None,
        max_prompt_chars: int = 12000,
        max_trajectories: int = 4,
        env_prompts: Mapping[str, SummaryPrompt] | None = None,
    ):
        super().__init__(prompt=prompt, max_prompt_chars=max_prompt_chars, max_trajectories=max_trajectories,
                         env_prompts=env_prompts)
        try:
            from openai import OpenAI
        except ImportError:
            raise ImportError('summarizer "openai" needs the openai SDK: pip install "skill-sd-trl[openai]"') from None
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url={base_url!r} must start with http:// or https:// (e.g. http://host:8000/v1)")
        if not model:
            raise ValueError("model must name the served model (the 'model' field of the request)")
        if timeout <= 0 or max_retries < 0:
            raise ValueError("timeout must be > 0 and max_retries >= 0")
        api_key = None
        if api_key_env is not None:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise ValueError(
                    f"environment variable {api_key_env} is not set; export the API key there, or pass "
                    "api_key_env=None for a server without authentication"
                )
        self.url = base_url.rstrip("/")
        self.model = model
        self.timeout = float(timeout)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.structured_output = structured_output
        self.extra_body = dict(extra_body or {})
        self.name = name or f"openai:{model}"
        self.client = OpenAI(base_url=self.url, api_key=api_key or "no-key", timeout=self.timeout,
                             max_retries=int(max_retries), default_headers=dict(headers or {}) or None)

    def complete(self, messages: list[dict[str, str]]) -> str:
        import openai

        request = dict(model=self.model, messages=messages, temperature=self.temperature, max_tokens=self.max_tokens,
                       extra_body=self.extra_body or None)
        if self.structured_output:
            request["response_format"] = SKILL_RESPONSE_FORMAT
        try:
            response = self.client.chat.completions.create(**request)
        except openai.APITimeoutError as exc:
            raise SummarizerError(f"timeout after {self.timeout}s waiting for {self.url}", retryable=True) from exc
        except openai.APIConnectionError as exc:
            raise SummarizerError(f"cannot reach {self.url}: {exc}", retryable=True) from exc
        except openai.APIStatusError as exc:
            detail = str(getattr(exc, "body", None) or exc.message)[:300]
            if exc.status_code == 400 and self.structured_output and "response_format" in detail:
                logger.info("%s does not support structured output; asking for plain JSON text", self.url)
                self.structured_output = False
                return self.complete(messages)
            raise SummarizerError(f"HTTP {exc.status_code} from {self.url}: {detail!r}",
                                  retryable=exc.status_code in _RETRYABLE_STATUS) from exc
        except (openai.APIResponseValidationError, ValueError) as exc:
            raise SummarizerError(f"response from {self.url} is not a chat completion: {exc}"[:400]) from exc
        choices = getattr(response, "choices", None)
        if not choices:
            raise SummarizerError(f"unexpected response shape from {self.url}: expected choices[0].message.content, "
                                  f"got {str(response)[:200]}")
        content = choices[0].message.content
        if not isinstance(content, str):
            raise SummarizerError(f"choices[0].message.content is {type(content).__name__}, expected a string "
                                  "(a refusal or tool call instead of text?)")
        return content


#: The skill JSON as an OpenAI structured-output schema (the strict check of ``parse_skill`` still applies).
SKILL_RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "skill",
        "strict": True,
        "schema": {"type": "object", "properties": {key: {"type": "string"} for key in SKILL_KEYS},
                   "required": list(SKILL_KEYS), "additionalProperties": False},
    },
}


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
