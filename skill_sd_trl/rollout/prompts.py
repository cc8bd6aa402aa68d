"""Rendering privileged context (a skill, or ground truth) into a prompt.

The student's prompt is never touched by this module during Skill-SD: only the teacher's copy is. The same function
builds the *student's* prompt in the skill-augmented GRPO baseline.

The context is untrusted text (a summarizer model wrote it). Passed a ``tokenizer``, :func:`add_context_to_prompt`
first runs it through :func:`neutralize_special_tokens`, so that text such as ``<|im_end|>`` or
``<|im_start|>system`` inside a skill cannot become real control tokens once the chat template is applied and the
prompt tokenized.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import weakref
from collections.abc import Mapping
from typing import Any


def add_context_to_prompt(
    prompt: Any, context: str | None, template: str, position: str = "system", *, tokenizer: Any = None
) -> Any:
    """Return a copy of ``prompt`` (a list of chat messages or a plain string) with ``context`` rendered in.

    ``template`` must contain ``{context}``. ``position`` is "system" (appended to the system message, or a new system
    message first), "user_prefix" or "user_suffix" (before / after the first user message's text). ``None`` or an
    empty context returns the prompt unchanged (the plain prompt).

    ``tokenizer`` (a tokenizer, or a processor wrapping one): when given, the context (never the trusted template) is
    passed through :func:`neutralize_special_tokens` first, so it contributes no special / added token ids to the
    tokenized prompt. ``None`` renders the context verbatim.
    """
    if context is None or not str(context).strip():
        return prompt
    context = str(context).strip()
    if tokenizer is not None:
        context = neutralize_special_tokens(context, tokenizer)
    block = template.replace("{context}", context)
    if isinstance(prompt, str):
        if position == "user_suffix":
            return f"{prompt}\n\n{block}"
        return f"{block}\n\n{prompt}"
    messages = copy.deepcopy(list(prompt))
    if position == "system":
        if messages and messages[0].get("role") == "system":
            messages[0]["content"] = _join(messages[0]["content"], block, suffix=True)
        else:
            messages.insert(0, {"role": "system", "content": block})
        return messages
    for message in messages:
        if message.get("role") == "user":
            message["content"] = _join(message["content"], block, suffix=position == "user_suffix")
            return messages
    raise ValueError(f"teacher_skill_position={position!r} needs a user message in the prompt, found none.")


def _join(content: Any, block: str, suffix: bool) -> Any:
    if isinstance(content, list):  # typed content blocks
        part = {"type": "text", "text": block}
        return [*content, part] if suffix else [part, *content]
    return f"{content}\n\n{block}" if suffix else f"{block}\n\n{content}"


# --------------------------------------------------------------------------------------------------------------------
# Untrusted text vs. the tokenizer's control tokens
# --------------------------------------------------------------------------------------------------------------------

# Characters tried, in order, as the break inserted into a control token's text. U+200B ZERO WIDTH SPACE keeps the text
# visually identical; U+2060 WORD JOINER is the fallback for a tokenizer whose normalizer drops U+200B; a plain space is
# the last resort (no normalizer deletes an inner space). The first one that passes the per-tokenizer probe is used.
_BREAK_CANDIDATES: tuple[str, ...] = ("\u200b", "\u2060", " ")
_MAX_REPAIR_ROUNDS = 8
_TEXT_CACHE_SIZE = 256


class _ControlTokens:
    """Per-tokenizer state: the control token texts, their ids, a matcher, the break character, a small result cache."""

    def __init__(self, tok: Any, fingerprint: tuple):
        self.fingerprint = fingerprint
        self.texts = control_token_texts(tok)
        self.ids = _ids_of(tok, self.texts)
        self.pattern = re.compile("|".join(re.escape(t) for t in self.texts)) if self.texts else None
        self.brk = self._probe_break(tok)
        self.cache: dict[str, str] = {}

    def _probe_break(self, tok: Any) -> str:
        candidates = [c for c in _BREAK_CANDIDATES if not any(c in t for t in self.texts)] or [" "]
        if not self.texts or not callable(tok):
            return candidates[0]
        for brk in candidates:
            probe = [_break_all(t, self.pattern, brk) for t in self.texts]
            try:
                encoded = tok(probe, add_special_tokens=False)["input_ids"]
            except Exception:  # a tokenizer that cannot be called like this: trust the text-level argument
                return brk
            if not any(i in self.ids for ids in encoded for i in ids):
                return brk
        return candidates[-1]


_STATE: "weakref.WeakKeyDictionary[Any, _ControlTokens]" = weakref.WeakKeyDictionary()


def _base_tokenizer(tokenizer: Any) -> Any:
    """The tokenizer itself, or the one a processor wraps."""
    return getattr(tokenizer, "tokenizer", tokenizer)


def control_token_texts(tokenizer: Any) -> list[str]:
    """The texts that ``tokenizer`` turns into special / added control tokens, longest first.

    These are every entry of ``all_special_tokens`` (BOS, EOS, PAD, UNK, ... and the additional special tokens) plus
    every token of ``added_tokens_decoder`` that is marked ``special``, plus non-special added tokens that look like
    markup (``<...>``, ``[...]``, or containing ``<|`` / ``|>``): Qwen3, for one, marks ``<think>`` and
    ``<tool_call>`` non-special, yet the tokenizer still matches their text as one added token. Plain-word added
    tokens are left alone. Texts shorter than two characters cannot be broken and are skipped.
    """
    tok = _base_tokenizer(tokenizer)
    texts: set[str] = set()
    for text in getattr(tok, "all_special_tokens", None) or ():
        if isinstance(text, str):
            texts.add(text)
    decoder = getattr(tok, "added_tokens_decoder", None) or {}
    for added in decoder.values():
        text = getattr(added, "content", added)
        if not isinstance(text, str):
            continue
        if getattr(added, "special", False) or _looks_like_markup(text):
            texts.add(text)
    return sorted((t for t in texts if len(t) >= 2), key=lambda t: (-len(t), t))


def _looks_like_markup(text: str) -> bool:
    stripped = text.strip()
    return len(stripped) >= 2 and (
        (stripped[0] == "<" and stripped[-1] == ">")
        or (stripped[0] == "[" and stripped[-1] == "]")
        or "<|" in stripped
        or "|>" in stripped
    )


def _ids_of(tok: Any, texts: list[str]) -> frozenset[int]:
    ids: set[int] = set()
    decoder = getattr(tok, "added_tokens_decoder", None) or {}
    by_text = {getattr(v, "content", v): k for k, v in decoder.items()}
    convert = getattr(tok, "convert_tokens_to_ids", None)
    for text in texts:
        if text in by_text:
            ids.add(int(by_text[text]))
        elif convert is not None:
            try:
                value = convert(text)
            except Exception:
                continue
            if isinstance(value, int):
                ids.add(value)
    unk = getattr(tok, "unk_token_id", None)
    if isinstance(unk, int):
        # Unknown characters map to UNK whatever is done to them; UNK is no control token for the chat format. (The
        # literal text of the UNK token is still broken like every other special token's text.)
        ids.discard(unk)
    return frozenset(ids)


def _break_all(text: str, pattern: "re.Pattern[str] | None", brk: str) -> str:
    """Insert ``brk`` after the first character of every occurrence of a control token text, overlaps included.

    Terminates: ``brk`` occurs in no control token text, so an occurrence that survives a pass lies inside a
    ``brk``-free stretch of the previous text, i.e. it was already an occurrence there; every pass breaks at least
    one, and none is ever created.
    """
    if pattern is None:
        return text
    while True:
        text, count = pattern.subn(lambda m: m[0][0] + brk + m[0][1:], text)
        if not count:
            return text


def _state_for(tok: Any) -> _ControlTokens:
    try:
        fingerprint = (len(tok), tuple(getattr(tok, "all_special_tokens", None) or ()))
    except TypeError:
        fingerprint = (None, tuple(getattr(tok, "all_special_tokens", None) or ()))
    try:
        state = _STATE.get(tok)
    except TypeError:  # not weak-referenceable: no caching
        return _ControlTokens(tok, fingerprint)
    if state is None or state.fingerprint != fingerprint:  # new tokenizer, or tokens added since
        state = _ControlTokens(tok, fingerprint)
        _STATE[tok] = state
    return state


def neutralize_special_tokens(text: str, tokenizer: Any) -> str:
    """``text`` rewritten so that tokenizing it, alone or inside a chat template, yields none of ``tokenizer``'s
    control token ids (see :func:`control_token_texts`), while it still reads the same as plain text.

    How: a break character is inserted after the first character of every occurrence of a control token's text
    (``<|im_end|>`` becomes ``<`` + U+200B + ``|im_end|>``). A tokenizer matches added / special tokens by exact
    substring (on the raw text, or on the normalized text for ``normalized=True`` tokens), so a text that contains
    no control token's text as a substring cannot produce one. Two things could still defeat that, and both are
    handled by checking against the tokenizer itself: a normalizer that deletes the break character (the break is
    chosen per tokenizer by a probe that tokenizes every broken token: U+200B, else U+2060, else a space), and a
    normalizer that folds look-alikes into a token's text (NFKC turns ``＜｜im_end｜＞`` into ``<|im_end|>``): the result
    is tokenized once more, with offsets, and any control token still found is broken at its character span
    (a fast tokenizer is needed for this second step; others rely on the text-level argument).

    ``tokenizer`` may be a processor wrapping a tokenizer; ``None``, or a tokenizer without special tokens, returns
    ``text`` unchanged. Results are cached per tokenizer (the same skill is rendered several times per step).
    """
    if tokenizer is None or not text:
        return text
    tok = _base_tokenizer(tokenizer)
    state = _state_for(tok)
    if state.pattern is None:
        return text
    cached = state.cache.get(text)
    if cached is not None:
        return cached
    out = _break_all(text, state.pattern, state.brk)
    out = _repair_with_offsets(out, tok, state)
    if len(state.cache) >= _TEXT_CACHE_SIZE:
        state.cache.clear()
    state.cache[text] = out
    return out


def _repair_with_offsets(text: str, tok: Any, state: _ControlTokens) -> str:
    """Break any control token the tokenizer still finds in ``text`` (e.g. produced by its normalizer)."""
    if not state.ids or not getattr(tok, "is_fast", False):
        return text
    for _ in range(_MAX_REPAIR_ROUNDS):
        try:
            encoded = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        except Exception:
            return text
        spans = [
            (int(a), int(b))
            for i, (a, b) in zip(encoded["input_ids"], encoded["offset_mapping"], strict=True)
            if i in state.ids
        ]
        if not spans:
            return text
        for begin, end in sorted(set(spans), reverse=True):
            if end - begin >= 2:
                middle = (begin + end) // 2
                text = text[:middle] + state.brk + text[middle:]
            else:  # one source character that normalizes into a whole control token: replace it
                text = text[:begin] + "\ufffd" + text[end:]
    # Still not clean after several rounds (a pathological normalizer): replace what the tokenizer still matches.
    encoded = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    pairs = zip(encoded["input_ids"], encoded["offset_mapping"], strict=True)
    for begin, end in sorted({(int(a), int(b)) for i, (a, b) in pairs if i in state.ids}, reverse=True):
        text = text[:begin] + "\ufffd" + text[end:]
    return text


def append_to_last_message(prompt: Any, text: str) -> Any:
    """``prompt`` with ``text`` appended to its last message (a plain string prompt: to its end), as TRL appends an
    environment's ``reset()`` text; the input is left untouched. Empty ``text`` returns ``prompt`` itself."""
    if not text:
        return prompt
    if isinstance(prompt, str):
        return prompt + text
    return [*prompt[:-1], {**prompt[-1], "content": prompt[-1]["content"] + text}]


def prompt_text(prompt: Any) -> str:
    """The plain text of a prompt (messages joined), for logs and summaries."""
    if isinstance(prompt, str):
        return prompt
    parts = []
    for message in prompt:
        content = message.get("content", "")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, Mapping))
        parts.append(f"[{message.get('role', '?')}] {content}")
    return "\n".join(parts)


def task_id_of(example: Mapping[str, Any], column: str) -> str:
    """The example's task id, or a stable hash of its prompt when the dataset has no such column."""
    value = example.get(column)
    if value is not None and str(value) != "":
        return str(value)
    payload = json.dumps(example.get("prompt"), sort_keys=True, default=str)
    return "prompt-" + hashlib.sha1(payload.encode("utf-8")).hexdigest()[:16]
