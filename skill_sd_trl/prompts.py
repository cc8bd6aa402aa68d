"""Rendering privileged context (a skill, or ground truth) into a prompt.

The student's prompt is never touched by this module during Skill-SD: only the teacher's copy is. The same function
builds the *student's* prompt in the skill-augmented GRPO baseline.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any


def add_context_to_prompt(prompt: Any, context: str | None, template: str, position: str = "system") -> Any:
    """Return a copy of ``prompt`` (a list of chat messages or a plain string) with ``context`` rendered in.

    ``template`` must contain ``{context}``. ``position`` is "system" (appended to the system message, or a new system
    message first), "user_prefix" or "user_suffix" (before / after the first user message's text). ``None`` or an
    empty context returns the prompt unchanged (the plain prompt).
    """
    if context is None or not str(context).strip():
        return prompt
    block = template.replace("{context}", str(context).strip())
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
