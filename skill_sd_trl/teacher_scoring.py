"""Teacher log-probs of the student's exact completion tokens under the teacher's own prompts (no grad).

Two ways, the same numbers: one padded forward over every (teacher prompt ⊕ completion) row, as the parent scores
the student; or each distinct teacher prompt encoded once and its rollouts scored from that prompt's KV cache
(``teacher_prompt_cache``). ``per_token_logps`` is the trainer's ``_get_per_token_logps_and_entropies``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import torch
from trl.trainer.utils import pad


def score_padded(model, prompt_ids: list[list[int]], completion_ids: torch.Tensor, completion_mask: torch.Tensor,
                 per_token_logps: Callable, pad_token_id: int, batch_size: int) -> torch.Tensor:
    """One forward over left-padded teacher prompts + the completions (the parent's own scoring path)."""
    device = completion_ids.device
    prompts = [torch.tensor(ids) for ids in prompt_ids]
    masks = [torch.ones_like(ids) for ids in prompts]
    prompts = pad(prompts, padding_value=pad_token_id, padding_side="left").to(device)
    masks = pad(masks, padding_value=0, padding_side="left").to(device)
    input_ids = torch.cat([prompts, completion_ids], dim=1)
    attention_mask = torch.cat([masks, completion_mask], dim=1)
    logps, _, _ = per_token_logps(model, input_ids, attention_mask, completion_ids.size(1), batch_size=batch_size)
    return logps


def score_shared_prompts(model, prompt_ids: list[list[int]], completion_ids: torch.Tensor,
                         completion_mask: torch.Tensor, per_token_logps: Callable, autocast: Callable) -> torch.Tensor:
    """Encode each distinct teacher prompt once and score its rollouts from that prompt's KV cache.

    The G rollouts of a task share one teacher prompt (task prompt ⊕ skill), which is usually longer than a
    completion: this reads (B/G)·P + B·C tokens instead of B·(P + C), and bounds the forward to one group.
    """
    device = completion_ids.device
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, ids in enumerate(prompt_ids):
        groups[tuple(ids)].append(i)
    logps = torch.zeros(completion_ids.shape, dtype=torch.float32, device=device)
    length = completion_ids.size(1)
    for prompt, rows in groups.items():
        cache = None
        if len(prompt) >= 2:
            head = torch.tensor([list(prompt[:-1])], device=device)
            cache = _repeated(model(input_ids=head, use_cache=True, logits_to_keep=1).cache, len(rows))
        if cache is None:
            # Nothing to cache, or a cache that cannot be repeated across the group (e.g. the linear-attention
            # layers of a hybrid model): score the group plainly — same numbers, no sharing.
            ids = torch.tensor([list(prompt)] * len(rows), device=device)
            seq = torch.cat([ids, completion_ids[rows]], dim=1)
            mask = torch.cat([torch.ones_like(ids), completion_mask[rows]], dim=1)
            logps[rows] = per_token_logps(model, seq, mask, length)[0].float()
            continue
        # The last prompt token is re-read so that its logits score the first completion token.
        tail = torch.tensor([[prompt[-1]]] * len(rows), device=device)
        seq = torch.cat([tail, completion_ids[rows]], dim=1)
        mask = torch.cat([torch.ones(len(rows), head.size(1) + 1, dtype=completion_mask.dtype, device=device),
                          completion_mask[rows]], dim=1)
        labels = seq.masked_fill(torch.cat([tail.new_ones(tail.shape), completion_mask[rows]], 1) == 0, -100)
        with autocast():
            out = model(input_ids=seq, attention_mask=mask, cache=cache, labels=labels, fused_lm_head=True)
        logps[rows] = out.log_probs[:, -length:].float()
    return logps


def _repeated(cache, repeats: int):
    """``cache`` repeated for ``repeats`` rollouts, or None where it cannot be (a model without a cache, or a hybrid
    model whose linear-attention layers lack ``batch_repeat_interleave``; the cache is then discarded)."""
    if cache is None:
        return None
    try:
        cache.batch_repeat_interleave(repeats)
    except (AttributeError, NotImplementedError):
        return None
    return cache
