"""Log-probs of completions whose rows share prompts: each distinct prompt is encoded once and its rows are scored from
that prompt's KV cache.

The G rollouts of a task share one prompt, which in agent RL on small models is often as long as a rollout: scoring
them row by row reads B·(P + C) tokens, sharing reads (B/G)·P + B·C. The numbers are the plain forward's (the same
causal attention over the same tokens; ``tests/test_shared_prompts.py`` checks log-probs, entropies and gradients
against the padded forward). It serves both passes that score a batch:

- the teacher (no grad): its prompts are the task prompt ⊕ a skill, shared by the task's group;
- the student's log-prob pass inside the loss (with grad): gradients reach the shared prompt through its cache, so a
  prompt used by G rows receives the sum of their gradients, as it does when encoded G times.
"""

from __future__ import annotations

from collections import defaultdict

import torch


def group_rows(prompt_ids: list[list[int]]) -> dict[tuple[int, ...], list[int]]:
    """Rows by identical prompt (first-seen order)."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, ids in enumerate(prompt_ids):
        groups[tuple(ids)].append(i)
    return groups


def unpadded_prompts(prompt_part: torch.Tensor, prompt_mask: torch.Tensor) -> list[list[int]]:
    """The prompt tokens of each row of a left-padded prompt block (its mask's 1s)."""
    return [row[mask.bool()].tolist() for row, mask in zip(prompt_part, prompt_mask, strict=True)]


def score_shared_prompts(model, prompt_ids: list[list[int]], completion_ids: torch.Tensor,
                         completion_mask: torch.Tensor, autocast, compute_entropy: bool = False):
    """``(log_probs, entropy)`` of ``completion_ids`` (rows × C) after each row's prompt, or ``None`` when the model
    gives no repeatable KV cache (a hybrid model's linear-attention layers, or gradient checkpointing turning the
    cache off): the caller then scores plainly.

    ``model`` must carry TRL's fused LM head (``fused_lm_head=True`` returns per-token ``log_probs`` / ``entropy``).
    Grad mode is the caller's: under ``torch.no_grad()`` nothing is kept for a backward.
    """
    device = completion_ids.device
    length = completion_ids.size(1)
    logps = torch.zeros(completion_ids.shape, dtype=torch.float32, device=device)
    entropy = torch.zeros(completion_ids.shape, dtype=torch.float32, device=device) if compute_entropy else None
    pieces = []
    for prompt, rows in group_rows(prompt_ids).items():
        if len(prompt) < 2:
            return None
        head = torch.tensor([list(prompt[:-1])], device=device)
        with autocast():
            cache = _repeated(model(input_ids=head, use_cache=True, logits_to_keep=1).cache, len(rows))
        if cache is None:
            return None
        # The last prompt token is re-read so that its logits score the first completion token.
        tail = torch.tensor([[prompt[-1]]] * len(rows), device=device)
        seq = torch.cat([tail, completion_ids[rows]], dim=1)
        mask = torch.cat([torch.ones(len(rows), head.size(1) + 1, dtype=completion_mask.dtype, device=device),
                          completion_mask[rows]], dim=1)
        labels = seq.masked_fill(torch.cat([tail.new_ones(tail.shape), completion_mask[rows]], 1) == 0, -100)
        with autocast():
            out = model(input_ids=seq, attention_mask=mask, cache=cache, labels=labels, fused_lm_head=True)
        pieces.append((rows, out))
    for rows, out in pieces:  # indexed writes keep the graph: each row's values come from its group's forward
        index = torch.tensor(rows, device=device)
        logps = logps.index_copy(0, index, out.log_probs[:, -length:].float())
        if compute_entropy:
            entropy = entropy.index_copy(0, index, out.entropy[:, -length:].float())
    return logps, entropy


def shared_prompt_pass(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
                       compute_entropy: bool, autocast):
    """``GRPOTrainer._get_per_token_logps_and_entropies``'s ``(log_probs, entropy, aux_loss=None)`` for a batch of
    left-padded prompts followed by ``logits_to_keep`` completion positions, sharing repeated prompts; ``None`` when no
    prompt repeats in these rows or the model gives no shareable cache (then the parent's pass is used)."""
    width = input_ids.size(1) - logits_to_keep
    prompts = unpadded_prompts(input_ids[:, :width], attention_mask[:, :width])
    if len(set(map(tuple, prompts))) == len(prompts):
        return None
    shared = score_shared_prompts(model, prompts, input_ids[:, width:], attention_mask[:, width:], autocast,
                                  compute_entropy)
    return None if shared is None else (*shared, None)


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
