"""Teacher log-probs of the student's exact completion tokens under the teacher's own prompts (no grad).

Two ways, the same numbers: one padded forward over every (teacher prompt ⊕ completion) row, as the parent scores
the student; or each distinct teacher prompt encoded once and its rollouts scored from that prompt's KV cache
(``teacher_prompt_cache``, :mod:`.shared_prompts`). ``per_token_logps`` is the parent's
``_get_per_token_logps_and_entropies``. For the dense estimator a ``reduce`` (:mod:`.dense`) makes the same pass
keep the logits and return the teacher's top-k with its log-probs as well: no second teacher forward.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..trl_private import pad
from .dense import logits_pass
from .shared_prompts import score_shared_prompts


def score_padded(model, prompt_ids: list[list[int]], completion_ids: torch.Tensor, completion_mask: torch.Tensor,
                 per_token_logps: Callable, pad_token_id: int, batch_size: int, autocast: Callable | None = None,
                 reduce: Callable | None = None):
    """One forward over left-padded teacher prompts + the completions (the parent's own scoring path); with
    ``reduce``, the same rows through the logits pass (:func:`~.dense.logits_pass`) and ``reduce``'s tensors."""
    device = completion_ids.device
    prompts = [torch.tensor(ids) for ids in prompt_ids]
    masks = [torch.ones_like(ids) for ids in prompts]
    prompts = pad(prompts, padding_value=pad_token_id, padding_side="left").to(device)
    masks = pad(masks, padding_value=0, padding_side="left").to(device)
    input_ids = torch.cat([prompts, completion_ids], dim=1)
    attention_mask = torch.cat([masks, completion_mask], dim=1)
    if reduce is not None:
        return logits_pass(model, input_ids, attention_mask, completion_ids.size(1), reduce, autocast, batch_size)[0]
    logps, _, _ = per_token_logps(model, input_ids, attention_mask, completion_ids.size(1), batch_size=batch_size)
    return logps


def score_teacher(model, prompt_ids: list[list[int]], completion_ids: torch.Tensor, completion_mask: torch.Tensor,
                  per_token_logps: Callable, autocast: Callable, pad_token_id: int, batch_size: int,
                  share_prompts: bool = True, reduce: Callable | None = None):
    """Teacher log-probs: each distinct prompt encoded once (``share_prompts``, :mod:`.shared_prompts`), or, when
    asked or when the model's KV cache cannot be shared, the padded forward. With ``reduce``: its tensors (the dense
    estimator's teacher support, :func:`~.dense.teacher_reduce`) from the same single pass."""
    if share_prompts:
        shared = score_shared_prompts(model, prompt_ids, completion_ids, completion_mask, autocast, reduce=reduce)
        if shared is not None:
            return shared if reduce is not None else shared[0]
    return score_padded(model, prompt_ids, completion_ids, completion_mask, per_token_logps, pad_token_id, batch_size,
                        autocast, reduce)
