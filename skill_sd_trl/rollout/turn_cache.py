"""Multi-turn sampling with ``transformers`` ``generate`` that keeps each episode's KV cache from one turn to the next.

The episode loop (:func:`~skill_sd_trl.rollout.multi_turn.play_episodes`) hands the sampler every episode's whole context each
turn: the prompt, the model's earlier answers and the environment's observations. Plain ``generate`` encodes all of
it again every turn, and the G rollouts of a task encode the same prompt G times. On a CPU this prefill is about as
costly as the tokens sampled (docs/benchmarks.md). :class:`TurnCache` instead

- encodes each distinct prompt once on the first turn and shares its cache between the rows that use it, and what
  the distinct prompts have in common (the rules of a task family, the chat header) once for all of them;
- keeps the cache after sampling, and on the next turn feeds only what each context added since (the last sampled
  token, the observation), dropping the rows of finished episodes.

A row's cache may hold columns that are not part of its context (the padding after an early end of answer, the
left padding of shorter rows); they stay masked out, and positions come from the attention mask, so each token sees
exactly its context at the same positions as in a fresh encoding: the same distribution, with the prefill paid once.
Whenever a context does not extend what the cache holds (a new batch, an answer cut shorter than it was sampled),
everything is encoded afresh.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable

import torch


class TurnCache:
    """The KV cache of one batch of episodes between turns, and the generation that uses it."""

    def __init__(self, pad_token_id: int, eos_token_ids: Iterable[int]):
        self.pad_token_id = int(pad_token_id)
        self.eos_token_ids = sorted(set(int(t) for t in eos_token_ids))
        self.reset()

    def reset(self) -> None:
        """Forget the cached batch (weights changed, or a new batch starts)."""
        self._cache = None
        self._ids: torch.Tensor | None = None  # the token ids of the cache's columns, per row
        self._mask: torch.Tensor | None = None  # 1 where a column is part of the row's context
        self._held: list[list[int]] = []  # per row: its context tokens that the cache holds

    @torch.no_grad()
    def generate(self, model, contexts: list[list[int]], **generate_kwargs) -> list[list[int]]:
        """Sample one answer per context with ``model.generate(**generate_kwargs)``; each answer ends at its first EOS
        (included) or at the length limit."""
        device = next(model.parameters()).device
        rows = self._rows_extended_by(contexts)
        if rows is None:
            ids, mask, cache = self._fresh(model, contexts, device)
        else:
            ids, mask, cache = self._extend(contexts, rows, device)
        settings = dict(return_dict_in_generate=True, pad_token_id=self.pad_token_id)
        config = generate_kwargs.pop("generation_config", None)
        if config is not None:  # one config object, not a config plus loose parameters (deprecated in transformers)
            config = copy.deepcopy(config)
            config.update(**settings, **generate_kwargs)
            settings = {"generation_config": config}
        else:
            settings.update(generate_kwargs)
        out = model.generate(input_ids=ids, attention_mask=mask, cache=cache, **settings)
        width = ids.size(1)
        new = out.sequences[:, width:]
        is_eos = torch.isin(new, torch.tensor(self.eos_token_ids, device=new.device))
        ends = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full_like(is_eos[:, 0], new.size(1), dtype=torch.long))
        new_mask = (torch.arange(new.size(1), device=new.device)[None, :] <= ends[:, None]).to(mask.dtype)
        answers = [row[: int(end) + 1].tolist() for row, end in zip(new, ends, strict=True)]
        # generate computed the cache of every column but the last sampled one
        self._cache = out.cache
        self._ids = out.sequences[:, :-1]
        self._mask = torch.cat([mask, new_mask], dim=1)[:, :-1]
        self._held = [row[m.bool()].tolist() for row, m in zip(self._ids, self._mask, strict=True)]
        return answers

    # ---------------------------------------------------------------------------------------------------------------
    def _rows_extended_by(self, contexts: list[list[int]]) -> list[int] | None:
        """For each context, the cached row it extends (in order, as episodes only drop out), or None."""
        if self._cache is None:
            return None
        rows, start = [], 0
        for context in contexts:
            match = next((r for r in range(start, len(self._held))
                          if len(context) > len(self._held[r]) and context[: len(self._held[r])] == self._held[r]), None)
            if match is None:
                return None
            rows.append(match)
            start = match + 1
        return rows

    def _fresh(self, model, contexts: list[list[int]], device):
        """Each distinct context's cache (all but its last token) computed once and shared by the rows that use it;
        the distinct contexts' common prefix (an environment's rules, a chat header) encoded once for all of them."""
        distinct = list(dict.fromkeys(tuple(c) for c in contexts))
        shared = _shared_prefix_length(distinct)
        prefix, suffixes = list(distinct[0][:shared]), [c[shared:] for c in distinct]
        width = max(len(c) for c in suffixes)
        # the prefix's columns, then the left-padded rest: padding columns sit between them, masked out
        ids = torch.tensor([prefix + [self.pad_token_id] * (width - len(c)) + list(c) for c in suffixes], device=device)
        mask = torch.tensor([[1] * shared + [0] * (width - len(c)) + [1] * len(c) for c in suffixes], device=device)
        index = torch.tensor([distinct.index(tuple(c)) for c in contexts], device=device)
        cache = None
        if shared:
            cache = model(input_ids=ids[:1, :shared], use_cache=True, logits_to_keep=1).cache
            cache.batch_select_indices(torch.zeros(len(distinct), dtype=torch.long, device=device))
        if width >= 2:
            positions = (mask.cumsum(1) - 1).clamp(min=0)
            cache = model(input_ids=ids[:, shared:-1], attention_mask=mask[:, :-1], position_ids=positions[:, shared:-1],
                          cache=cache, use_cache=True, logits_to_keep=1).cache
        if cache is not None and (len(distinct) != len(contexts)
                                  or not torch.equal(index, torch.arange(len(contexts), device=device))):
            cache.batch_select_indices(index)
        return ids[index], mask[index], cache

    def _extend(self, contexts: list[list[int]], rows: list[int], device):
        """The kept rows' cached columns followed by what each context added, left-padded among themselves."""
        index = torch.tensor(rows, device=self._ids.device)
        cache = self._cache
        if rows != list(range(len(self._held))):
            cache.batch_select_indices(index)
        added = [context[len(self._held[r]):] for context, r in zip(contexts, rows, strict=True)]
        width = max(len(a) for a in added)
        seg = torch.tensor([[self.pad_token_id] * (width - len(a)) + a for a in added], device=device)
        seg_mask = torch.tensor([[0] * (width - len(a)) + [1] * len(a) for a in added], device=device)
        ids = torch.cat([self._ids[index].to(device), seg], dim=1)
        mask = torch.cat([self._mask[index].to(device), seg_mask.to(self._mask.dtype)], dim=1)
        return ids, mask, cache


#: Fewest shared prompt tokens worth a forward of their own (below this, encoding them per context costs less).
MIN_SHARED_PREFIX = 16


def _shared_prefix_length(distinct: list[tuple[int, ...]]) -> int:
    """How many leading tokens every distinct context shares, leaving each at least one token of its own; 0 when
    there is one context or too little is shared."""
    if len(distinct) < 2:
        return 0
    length = min(len(os.path.commonprefix(distinct)), min(len(c) for c in distinct) - 1)
    return length if length >= MIN_SHARED_PREFIX else 0
