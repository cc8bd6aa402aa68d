"""Pure loss functions of Skill-SD, testable on hand-made tensors.

Notation per model-generated token t:  ℓ_t = log π_θ − log π_T  (teacher detached),
ρ_t = π_θ / sg(π_old)  (gradient flows through the numerator only).

The default estimator ρ·k3 = ρ·(exp(−ℓ) − 1 + ℓ) has per-sample gradient ρ·ℓ·∇log π_θ, whose expectation under the
rollout policy π_old is exactly ∇KL(π_θ‖π_T): the reverse KL, unbiased even when the sampler is stale. The
variants are kept for ablations: k3 without ρ gives the *forward*-KL gradient on-policy, k1 gives zero.

The dense estimator (:func:`dense_sdl_per_token`) is the reverse KL itself at each position, an exact expectation over
the next token: KL(P‖Q) between the student's and the teacher's next-token distributions, over the full vocabulary or
over a support of a few tokens plus one tail bucket holding the rest (docs/method.md, "The dense estimator").

Per-token losses treat positions independently (the dependence of later states on earlier tokens is dropped), as
in every token-level RL/distillation loss.
"""

from __future__ import annotations

import torch


def sdl_per_token(
    student_logps: torch.Tensor,
    old_logps: torch.Tensor,
    teacher_logps: torch.Tensor,
    is_clip: float | None = None,
    estimator: str = "rho_k3",
    log_ratio_clamp: float = 20.0,
) -> torch.Tensor:
    """Per-token self-distillation loss, same shape as the inputs, computed in float32 (float64 stays float64).

    Args:
        student_logps: log π_θ(y_t) with grad (the parent's per-token log-probs).
        old_logps: log π_old(y_t) of the rollout policy; treated as a constant.
        teacher_logps: log π_T(y_t | prompt ⊕ skill); treated as a constant.
        is_clip: optional upper clip on ρ (the clipped value keeps the gradient of the unclipped ρ's numerator
            only where unclipped, i.e. `min(ρ, c)`).
        estimator: "rho_k3" (default), "k3" (ρ dropped) or "k1" (ℓ itself).
        log_ratio_clamp: ℓ and log ρ are clamped to ±this before exponentiation.
    """
    dtype = torch.promote_types(student_logps.dtype, torch.float32)
    logp = student_logps.to(dtype)
    log_ratio = (logp - teacher_logps.detach().to(dtype)).clamp(-log_ratio_clamp, log_ratio_clamp)
    if estimator == "k1":
        return log_ratio
    k3 = torch.exp(-log_ratio) - 1.0 + log_ratio
    if estimator == "k3":
        return k3
    if estimator != "rho_k3":
        raise ValueError(f"estimator={estimator!r} is unknown; use 'rho_k3', 'k3' or 'k1'.")
    log_rho = (logp - old_logps.detach().to(dtype)).clamp(-log_ratio_clamp, log_ratio_clamp)
    rho = torch.exp(log_rho)
    if is_clip is not None:
        rho = torch.clamp(rho, max=is_clip)
    return rho * k3


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the positions where ``mask`` is 1 (0 when the mask is empty)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def sanitize_logps(logps: torch.Tensor, floor: float = -1e4) -> tuple[torch.Tensor, int]:
    """Replace non-finite log-probs (NaN, ±inf) by ``floor`` (a very unlikely token) and count them.

    A log-prob is ≤ 0, so +inf is as invalid as NaN; both become the floor so that the log-ratio clamp bounds their
    effect instead of a NaN reaching the loss.
    """
    bad = ~torch.isfinite(logps)
    count = int(bad.sum().item())
    if count:
        logps = torch.where(bad, torch.full_like(logps, floor), logps)
    return logps, count


def dense_sdl_per_token(
    student_logps: torch.Tensor,
    teacher_logps: torch.Tensor,
    valid: torch.Tensor | None = None,
    teacher_tail_logp: torch.Tensor | None = None,
    log_ratio_clamp: float = 20.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-position reverse KL ``KL(P‖Q)`` between the student's and the teacher's next-token distributions, and the
    student's tail mass (detached; None without a tail bucket). Computed in float32 (float64 stays float64).

    ``P`` and ``Q`` live on S support slots plus, with ``teacher_tail_logp``, one tail bucket holding every other token
    of the vocabulary: ``P_tail = 1 − Σ_v P_v`` (so P sums to 1 identically in θ), ``Q_tail = exp(teacher_tail_logp)``.

    The loss is ``Σ_b P_b · sg(ℓ_b)``, ``ℓ_b = clamp(log P_b − log Q_b)``: its value is the (clamped) KL, and its gradient
    ``Σ_b ∇P_b · ℓ_b`` is the KL's exact gradient, because the other half, ``Σ_b P_b ∇log P_b = ∇Σ_b P_b``, is 0. Written
    this way no ``∇log P_tail`` is ever formed, which would blow up where the tail's mass vanishes.

    Args:
        student_logps: (..., S) log π_θ of the support's tokens, with grad (a full log-softmax when S is the vocabulary).
        teacher_logps: (..., S) log π_T of the same tokens; treated as a constant.
        valid: (..., S) bool, False on a slot that must not count (a token already in another slot); None: all count.
        teacher_tail_logp: (...) log of the teacher's mass outside the support, −inf when nothing is outside it (the
            bucket is then dropped); None: no tail bucket (the support is the whole vocabulary).
        log_ratio_clamp: each ℓ_b is clamped to ±this (as the sampled estimator clamps ℓ).
    """
    dtype = torch.promote_types(student_logps.dtype, torch.float32)
    logp = student_logps.to(dtype)
    if valid is not None:
        logp = logp.masked_fill(~valid, float("-inf"))  # a dropped slot has P = 0 and no gradient
    probs = logp.exp()
    per_token = (probs * _clamped_gap(logp.detach(), teacher_logps.detach().to(dtype), log_ratio_clamp)).sum(-1)
    if teacher_tail_logp is None:
        return per_token, None
    tail = -torch.expm1(torch.logsumexp(logp, dim=-1))  # 1 − Σ P_v: its gradient is −Σ ∇P_v, bounded
    tail_gap = _clamped_gap(tail.detach().log(), teacher_tail_logp.detach().to(dtype), log_ratio_clamp)
    present = torch.isfinite(teacher_tail_logp)  # −inf: the support is the whole vocabulary, no bucket
    per_token = per_token + torch.where(present, tail * tail_gap, torch.zeros_like(tail))
    return per_token, torch.where(present, tail.detach(), torch.zeros_like(tail))


def _clamped_gap(student: torch.Tensor, teacher: torch.Tensor, clamp: float) -> torch.Tensor:
    """``clamp(student − teacher)``, 0 where it is undefined (both −inf, or a rounding-negative tail's log)."""
    return torch.nan_to_num((student - teacher).clamp(-clamp, clamp), nan=0.0)


def dense_support(completion_ids: torch.Tensor, teacher_logps: torch.Tensor, topk_ids: torch.Tensor,
                  topk_logps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The support of the top-k dense estimator at each position: the sampled token in slot 0, then the teacher's
    top-k. Returns ``(ids, valid, teacher_logps)``, each (..., k + 1); ``valid`` is False on the top-k slot that repeats
    the sampled token, so that no token counts twice."""
    sampled = completion_ids.unsqueeze(-1)
    ids = torch.cat([sampled, topk_ids], dim=-1)
    valid = torch.cat([torch.ones_like(sampled, dtype=torch.bool), topk_ids != sampled], dim=-1)
    return ids, valid, torch.cat([teacher_logps.unsqueeze(-1).to(topk_logps.dtype), topk_logps], dim=-1)


def bucket_log_probs(logits: torch.Tensor, support_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """From logits (..., V): the log-probs of ``support_ids`` (..., S) and the log of the mass outside them (..., ),
    −inf when the support covers the vocabulary. Exact (a log-sum-exp over the complement, not ``log(1 − Σ)``), for
    the teacher's no-grad scoring; repeated ids in ``support_ids`` count once."""
    logits = logits.float() if logits.dtype != torch.float64 else logits
    lse = torch.logsumexp(logits, dim=-1, keepdim=True)
    outside = logits.scatter(-1, support_ids, float("-inf"))
    return logits.gather(-1, support_ids) - lse, (torch.logsumexp(outside, dim=-1, keepdim=True) - lse).squeeze(-1)
