"""L_SDL of one micro-batch: the per-token estimator over the action tokens, its reduction, and its metrics.

Two reductions, both on the GRPO loss's own accumulation normalizer (``normalizer``, :func:`~skill_sd_trl.trl_private.
sdl_normalizer`): ``token_mean`` divides the sum over action tokens by their count, ``sequence_sum`` by the count of
trajectories (each trajectory's sum over its action tokens, then a mean over trajectories). The numerator is the same.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .dense import batch_dense_inputs
from .losses import dense_sdl_per_token, sdl_per_token
from .sdl_metrics import first_turn_mask, sdl_metrics


def sdl_loss(student_logps: torch.Tensor, inputs: dict, args, accelerator, normalizer: Callable,
             support_logps: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """``(L_SDL without λ, metrics)``.

    Args:
        student_logps: log π_θ of the completion tokens (B × C), with grad.
        inputs: the micro-batch (``teacher_per_token_logps``, ``teacher_row_mask``, masks; the teacher's support for
            the dense estimator).
        normalizer: ``normalizer(token_count, sequences)``, what the sum is divided by; ``sequences`` is the micro-batch's
            row count under ``sequence_sum``, None under ``token_mean``.
        support_logps: the dense estimator's student log-probs over each position's support (B × C × S), with grad.
    """
    mask = inputs["completion_mask"]
    if "tool_mask" in inputs:
        mask = mask * inputs["tool_mask"]
    # Rows without a teacher signal add 0 but keep their tokens in the normalizer, so λ weighs every token alike.
    scored = mask * inputs["teacher_row_mask"].unsqueeze(1).to(mask.dtype)
    old = inputs.get("old_per_token_logps")
    old = student_logps.detach() if old is None else old
    teacher = inputs["teacher_per_token_logps"]
    tails = None
    if args.sdl_estimator == "dense":
        # An exact expectation over the next token at each position: no ρ and no vLLM ratio, which reweigh the sampled
        # token only (docs/method.md, "The dense estimator").
        teacher_support, valid, teacher_tail = batch_dense_inputs(inputs)
        per_token, student_tail = dense_sdl_per_token(support_logps, teacher_support, valid, teacher_tail,
                                                      args.sdl_log_ratio_clamp)
        if student_tail is not None:
            tails = (student_tail, teacher_tail.exp())
    else:
        per_token = sdl_per_token(
            student_logps, old, teacher,
            is_clip=args.sdl_is_clip,
            estimator=args.sdl_estimator,
            log_ratio_clamp=args.sdl_log_ratio_clamp,
        )
        if "importance_sampling_ratio" in inputs:  # vLLM sampler ≠ trainer: correct to the true sampler
            per_token = per_token * inputs["importance_sampling_ratio"].detach()
    sequences = per_token.size(0) if args.sdl_reduction == "sequence_sum" else None
    loss = (per_token * scored.to(per_token.dtype)).sum() / normalizer(mask.to(per_token.dtype).sum(), sequences)
    logged = sdl_metrics(accelerator, per_token.detach(), student_logps.detach(), old, teacher, scored.float(),
                         args.sdl_coef, args.sdl_log_ratio_clamp, inputs.get("rollout_success"),
                         first_turn_mask(inputs["completion_mask"], inputs.get("tool_mask")),
                         row_mask=inputs["teacher_row_mask"], reduction=args.sdl_reduction, tails=tails)
    return (loss.to(student_logps.dtype) if student_logps.dtype == torch.float64 else loss), logged
