"""Pure loss functions of Skill-SD, testable on hand-made tensors.

Notation per model-generated token t:  ℓ_t = log π_θ − log π_T  (teacher detached),
ρ_t = π_θ / sg(π_old)  (gradient flows through the numerator only).

The default estimator ρ·k3 = ρ·(exp(−ℓ) − 1 + ℓ) has per-sample gradient ρ·ℓ·∇log π_θ, whose expectation under the
rollout policy π_old is exactly ∇KL(π_θ‖π_T): the reverse KL, unbiased even when the sampler is stale. The
variants are kept for ablations: k3 without ρ gives the *forward*-KL gradient on-policy, k1 gives zero.

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
