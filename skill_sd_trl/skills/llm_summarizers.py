"""Model-backed summarizers: a local ``transformers`` model or any OpenAI-compatible endpoint writes the skill JSON.

Both render the environment's summary prompt (:class:`~skill_sd_trl.skills.prompts.PromptBook`) and return raw text;
the caller parses it with :func:`~skill_sd_trl.skills.schema.parse_skill`, as for every :class:`Summarizer`.
"""

from __future__ import annotations

import logging
import os
import threading
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from .prompts import PromptBook, PromptSpec, SummaryPrompt
from .schema import SKILL_KEYS
from .summarizer import Summarizer, SummarizerError, _check_one_task
from .trajectory import Trajectory

logger = logging.getLogger(__name__)


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
