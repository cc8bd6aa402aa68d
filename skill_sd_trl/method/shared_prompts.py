"""Log-probs of completions whose rows share prompts: each distinct prompt is encoded once and its rows are scored from
that prompt's KV cache.

The G rollouts of a task share one prompt, which in agent RL on small models is often as long as a rollout: scoring
them row by row reads B·(P + C) tokens, sharing reads (B/G)·P + B·C. The numbers are the plain forward's (the same
causal attention over the same tokens; ``tests/test_shared_prompts.py`` checks log-probs, entropies and gradients
against the padded forward). It serves both passes that score a batch:

- the teacher (no grad): its prompts are the task prompt ⊕ a skill, shared by the task's group;
- the student's log-prob pass inside the loss (with grad): gradients reach the shared prompt through its cache, so a
  prompt used by G rows receives the sum of their gradients, as it does when encoded G times.

A group's rollouts differ much in length (a one-move answer, three turns with two observations), and one padded
forward runs every row to the longest: on the CPU Sokoban recipe about 40 % of the positions were padding. The rows
are therefore sorted by length and cut into a few length buckets (:func:`length_buckets`), each run only to its own
longest row, from the same prompt cache.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from ..trl_private import fused_logps
from .dense import labelled_logits, placed


def group_rows(prompt_ids: list[list[int]]) -> dict[tuple[int, ...], list[int]]:
    """Rows by identical prompt (first-seen order)."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, ids in enumerate(prompt_ids):
        groups[tuple(ids)].append(i)
    return groups


def unpadded_prompts(prompt_part: torch.Tensor, prompt_mask: torch.Tensor) -> list[list[int]]:
    """The prompt tokens of each row of a left-padded prompt block (its mask's 1s)."""
    return [row[mask.bool()].tolist() for row, mask in zip(prompt_part, prompt_mask, strict=True)]


# Positions a forward call is worth. Chosen, not tuned: in a synthetic batch shaped like the CPU recipe's (2 groups of
# 8, lengths 12–170) it cut each group into 3 buckets.
BUCKET_CALL_COST = 48


def score_shared_prompts(model, prompt_ids: list[list[int]], completion_ids: torch.Tensor,
                         completion_mask: torch.Tensor, autocast, compute_entropy: bool = False,
                         bucket_call_cost: int = BUCKET_CALL_COST, reduce=None):
    """``(log_probs, entropy)`` of ``completion_ids`` (rows × C) after each row's prompt, or ``None`` when the model
    gives no repeatable KV cache (a hybrid model's linear-attention layers, or gradient checkpointing turning the
    cache off): the caller then scores plainly.

    ``model`` must carry TRL's fused LM head (:func:`~skill_sd_trl.trl_private.fused_logps`: per-token log-probs and
    entropies without logits). With ``reduce`` (the dense estimator, :mod:`.dense`) each bucket runs the plain forward
    instead, and the result is ``reduce``'s tensors (rows × C × ...) of the bucket's logits.
    Grad mode is the caller's: under ``torch.no_grad()`` nothing is kept for a backward. ``bucket_call_cost``: see
    :func:`length_buckets`.
    """
    device = completion_ids.device
    length = completion_ids.size(1)
    logps = torch.zeros(completion_ids.shape, dtype=torch.float32, device=device)
    entropy = torch.zeros(completion_ids.shape, dtype=torch.float32, device=device) if compute_entropy else None
    lengths = _row_lengths(completion_mask)
    pieces = []
    for prompt, rows in group_rows(prompt_ids).items():
        if len(prompt) < 2:
            return None
        head = torch.tensor([list(prompt[:-1])], device=device)
        with autocast():
            prompt_cache = model(input_ids=head, use_cache=True, logits_to_keep=1).cache
        buckets = [list(range(len(rows)))]  # one bucket unless the cache can be read by several forwards
        if _is_plain_dynamic(prompt_cache):
            buckets = length_buckets([lengths[r] for r in rows], bucket_call_cost)
        for bucket in buckets:
            bucket_rows = [rows[i] for i in bucket]
            # One bucket takes the prompt's cache itself; several each read it expanded (no copy, same gradients).
            cache = (_repeated(prompt_cache, len(bucket_rows)) if len(buckets) == 1
                     else _expanded(prompt_cache, len(bucket_rows)))
            if cache is None:
                return None
            width = max(1, max(lengths[r] for r in bucket_rows))
            # The last prompt token is re-read so that its logits score the first completion token.
            tail = torch.tensor([[prompt[-1]]] * len(bucket_rows), device=device)
            seq = torch.cat([tail, completion_ids[bucket_rows, :width]], dim=1)
            row_mask = completion_mask[bucket_rows, :width]
            mask = torch.cat([torch.ones(len(bucket_rows), head.size(1) + 1, dtype=completion_mask.dtype,
                                         device=device), row_mask], dim=1)
            if reduce is not None:  # the dense estimator: logits of the labelled positions (seq[:, j] scores j + 1)
                keep = row_mask.bool()
                with autocast():
                    logits, _ = labelled_logits(model, torch.cat([keep, keep.new_zeros(len(bucket_rows), 1)], 1),
                                                input_ids=seq, attention_mask=mask, cache=cache)
                values = reduce(logits, seq[:, 1:][keep], keep, bucket_rows)
                pieces.append((bucket_rows, width, *(placed(v, keep) for v in values)))
                continue
            labels = seq.masked_fill(torch.cat([tail.new_ones(tail.shape), row_mask], 1) == 0, -100)
            with autocast():
                piece = fused_logps(model, labels, input_ids=seq, attention_mask=mask, cache=cache)
            pieces.append((bucket_rows, width, *piece))
    if reduce is not None:
        return _assembled(pieces, completion_ids.size(0), length)
    # Indexed writes keep the graph: each row's values come from its bucket's forward.
    for rows, width, piece_logps, piece_entropy in pieces:
        index = torch.tensor(rows, device=device)
        logps = logps.index_copy(0, index, _widen(piece_logps[:, -width:].float(), length))
        if compute_entropy:
            entropy = entropy.index_copy(0, index, _widen(piece_entropy[:, -width:].float(), length))
    return logps, entropy


def length_buckets(lengths: list[int], call_cost: int = BUCKET_CALL_COST) -> list[list[int]]:
    """Indices into ``lengths`` cut into buckets of similar length that minimize the positions one padded forward per
    bucket runs (rows × the bucket's longest row) plus ``call_cost`` positions per extra forward (the fixed cost of a
    call, and the shared prompt each bucket reads again). Exact dynamic programming over the sorted lengths."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    sorted_lengths = [lengths[i] for i in order]
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[j]: cost of the j shortest rows
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):  # rows i..j-1 in one bucket, run to the length of row j-1
            cost = best[i] + (j - i) * sorted_lengths[j - 1] + call_cost
            if cost < best[j]:
                best[j], cut[j] = cost, i
    buckets, j = [], n
    while j > 0:
        buckets.append(order[cut[j]:j])
        j = cut[j]
    return buckets[::-1]


def _row_lengths(completion_mask: torch.Tensor) -> list[int]:
    """Columns up to and including each row's last real token (0 for an empty row)."""
    columns = torch.arange(1, completion_mask.size(1) + 1, device=completion_mask.device)
    return (completion_mask.bool() * columns).amax(dim=1).tolist()


def _widen(values: torch.Tensor, length: int) -> torch.Tensor:
    """A bucket's per-token values padded with zeros on the right to the batch's completion width."""
    return torch.nn.functional.pad(values, (0, length - values.size(1)))


def _assembled(pieces: list, rows: int, length: int) -> tuple[torch.Tensor, ...]:
    """Each output of a reduce, rows × ``length`` × ..., from the buckets' (rows, width, *outputs) pieces (indexed
    writes: they keep the graph)."""
    outputs = None
    for bucket_rows, width, *values in pieces:
        index = torch.tensor(bucket_rows, device=values[0].device)
        if outputs is None:
            outputs = [v.new_zeros((rows, length, *v.shape[2:])) for v in values]
        widened = [torch.nn.functional.pad(v, (0, 0) * (v.dim() - 2) + (0, length - width)) for v in values]
        outputs = [o.index_copy(0, index, w) for o, w in zip(outputs, widened, strict=True)]
    return tuple(outputs)


def _is_plain_dynamic(cache) -> bool:
    """Whether every layer of ``cache`` is a plain ``DynamicLayer`` (full attention, keys and values only), the one
    kind whose tensors can be read by several forwards at once."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    return type(cache) is DynamicCache and all(type(layer) is DynamicLayer for layer in cache.layers)


def _expanded(cache, rows: int):
    """A new cache holding ``cache``'s single row expanded to ``rows`` rows (views: the forward's concatenation
    makes its own tensors, and gradients flow back to the one shared prompt encoding)."""
    from transformers.cache_utils import DynamicCache

    return DynamicCache(ddp_cache_data=[(layer.keys.expand(rows, -1, -1, -1), layer.values.expand(rows, -1, -1, -1))
                                        for layer in cache.layers])


def shared_prompt_pass(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
                       compute_entropy: bool, autocast, bucket_call_cost: int = BUCKET_CALL_COST, reduce=None):
    """``GRPOTrainer._get_per_token_logps_and_entropies``'s ``(log_probs, entropy, aux_loss=None)`` for a batch of
    left-padded prompts followed by ``logits_to_keep`` completion positions, sharing repeated prompts; ``None`` when no
    prompt repeats in these rows or the model gives no shareable cache (then the parent's pass is used). With
    ``reduce`` (:mod:`.dense`): ``reduce``'s tensors instead."""
    width = input_ids.size(1) - logits_to_keep
    prompts = unpadded_prompts(input_ids[:, :width], attention_mask[:, :width])
    if len(set(map(tuple, prompts))) == len(prompts):
        return None
    shared = score_shared_prompts(model, prompts, input_ids[:, width:], attention_mask[:, width:], autocast,
                                  compute_entropy, bucket_call_cost, reduce)
    if shared is None or reduce is not None:
        return shared
    return (*shared, None)


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
