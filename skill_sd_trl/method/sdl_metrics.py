"""The logged self-distillation and teacher metrics of one micro-batch (documented in docs/metrics.md).

Every mean is over the scored completion tokens of all processes (``reduce`` sums numerators and counts), so the
numbers do not depend on how the batch was split.
"""

from __future__ import annotations

import torch


def sdl_metrics(accelerator, per_token: torch.Tensor, student_logps: torch.Tensor, old: torch.Tensor,
                teacher: torch.Tensor, mask: torch.Tensor, sdl_coef: float, log_ratio_clamp: float,
                success: torch.Tensor | None = None, first_turn: torch.Tensor | None = None,
                row_mask: torch.Tensor | None = None, reduction: str = "token_mean",
                tails: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
    """``self_distillation/*`` and ``teacher/logp_gap*`` for the given per-token SDL, log-probs and token mask;
    with ``success`` (1 solved, 0 not, per row) also the split by outcome, and with ``first_turn`` (1 on the tokens of
    each rollout's first model turn, see :func:`first_turn_mask`) the split by turn. With ``row_mask`` (1 on the rows
    the teacher scored) also the per-trajectory sum, which ``weighted_sdl`` follows under ``reduction='sequence_sum'``;
    with ``tails`` (the dense estimator's student and teacher mass outside the support) their means."""

    def global_sums(x, m):
        return accelerator.reduce(torch.stack([(x * m).sum(), m.sum()]).float(), reduction="sum")

    def global_mean(x, m=mask):
        totals = global_sums(x, m)
        return (totals[0] / totals[1].clamp(min=1.0)).item()

    rho = torch.exp((student_logps.float() - old.float()).clamp(-log_ratio_clamp, log_ratio_clamp))
    rho_max = (rho * mask).max() if mask.any() else torch.zeros((), device=rho.device)
    gap = teacher.float() - student_logps.float()
    metrics = {
        "self_distillation/sdl": global_mean(per_token),
        "self_distillation/weighted_sdl": sdl_coef * global_mean(per_token),
        "teacher/logp_gap": global_mean(gap),
        "self_distillation/is_ratio_mean": global_mean(rho),
        "self_distillation/is_ratio_max": accelerator.gather(rho_max.reshape(1)).max().item(),
    }
    if row_mask is not None:  # Σ over a trajectory's action tokens, mean over the scored trajectories
        totals = accelerator.reduce(torch.stack([(per_token * mask).sum(), row_mask.sum()]).float(), reduction="sum")
        metrics["self_distillation/sdl_sequence"] = (totals[0] / totals[1].clamp(min=1.0)).item()
        if reduction == "sequence_sum":
            metrics["self_distillation/weighted_sdl"] = sdl_coef * metrics["self_distillation/sdl_sequence"]
    if tails is not None:
        metrics["self_distillation/dense_tail_mass"] = global_mean(tails[0])
        metrics["teacher/dense_tail_mass"] = global_mean(tails[1])
    # Diagnostics over subsets of the tokens: (SDL key or None, gap key, mask); each logged only when it has tokens.
    splits = []
    if success is not None:  # does the teacher favour what worked, and where does the SDL come from?
        solved = (success == 1).to(mask.dtype).unsqueeze(1)
        won, lost = mask * solved, mask * (success == 0).to(mask.dtype).unsqueeze(1)
        splits += [("self_distillation/sdl_success", "teacher/logp_gap_success", won),
                   ("self_distillation/sdl_failure", "teacher/logp_gap_failure", lost)]
        total = global_sums(per_token, mask)[0]
        metrics["self_distillation/sdl_success_share"] = (global_sums(per_token, won)[0] / total).item() if total != 0 else 0.0
    if first_turn is not None:  # a skill is written from the task's first board: does the teacher read later turns?
        first = mask * first_turn.to(mask.dtype)
        later = mask - first
        splits += [("self_distillation/sdl_first_turn", "teacher/logp_gap_first_turn", first),
                   ("self_distillation/sdl_later_turns", "teacher/logp_gap_later_turns", later)]
        if success is not None:
            splits += [(None, "teacher/logp_gap_success_first_turn", first * solved),
                       (None, "teacher/logp_gap_success_later_turns", later * solved)]
    for sdl_key, gap_key, m in splits:
        sums = global_sums(per_token, m)
        if sums[1] > 0:  # logged only when such tokens were scored
            if sdl_key is not None:
                metrics[sdl_key] = (sums[0] / sums[1]).item()
            metrics[gap_key] = global_mean(gap, m)
    return metrics


def first_turn_mask(completion_mask: torch.Tensor, tool_mask: torch.Tensor | None) -> torch.Tensor:
    """1 on the completion tokens before the first environment token (``completion_mask`` 1, ``tool_mask`` 0): the
    model's first turn. Without a ``tool_mask`` every completion is a single turn."""
    if tool_mask is None:
        return completion_mask.clone()
    env = completion_mask * (1 - tool_mask)
    return completion_mask * (env.cumsum(dim=1) == 0).to(completion_mask.dtype)


def term_gradient_metrics(parameters, grpo_term: torch.Tensor, sdl_term: torch.Tensor) -> dict[str, float]:
    """``self_distillation/grad_*``: how large the (weighted) SDL term's gradient is next to the GRPO term's, over
    the trainable ``parameters``, and how aligned. Both graphs are kept: the caller still backpropagates their sum.

    Norms are this process's (before any all-reduce): the diagnostic is a scale, so one rank's batch is enough.
    """
    params = [p for p in parameters if p.requires_grad]

    def flat_grad(term):
        if not term.requires_grad:
            return torch.zeros(sum(p.numel() for p in params), device=term.device)
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                          for g, p in zip(grads, params)])

    g_grpo, g_sdl = flat_grad(grpo_term), flat_grad(sdl_term)
    grpo_norm, sdl_norm = g_grpo.norm().item(), g_sdl.norm().item()
    metrics = {"self_distillation/grad_norm": sdl_norm, "self_distillation/grpo_grad_norm": grpo_norm}
    if grpo_norm > 0:  # no ratio for vanilla OPD (grpo_coef = 0) or a batch whose advantages are all 0
        metrics["self_distillation/grad_norm_ratio"] = sdl_norm / grpo_norm
        if sdl_norm > 0:
            metrics["self_distillation/grad_cosine"] = (g_grpo @ g_sdl).item() / (grpo_norm * sdl_norm)
    return metrics


def rollout_success(inputs: list[dict]) -> torch.Tensor | None:
    """Per row 1 (solved) or 0, when every row's episode record says, for the diagnostics that split the teacher gap
    and the SDL by outcome; ``None`` otherwise."""
    episodes = [x.get("episode") for x in inputs]
    if not all(isinstance(e, dict) and "success" in e for e in episodes):
        return None
    return torch.tensor([float(bool(e["success"])) for e in episodes])
