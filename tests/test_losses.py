"""The distillation estimator, checked in exact expectation (no sampling noise) on a float64 categorical."""

import math

import pytest
import torch

from skill_sd_trl.method.losses import masked_mean, sanitize_logps, sdl_per_token

V = 7


def _setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(V, generator=g, dtype=torch.float64, requires_grad=True)
    q = torch.softmax(torch.randn(V, generator=g, dtype=torch.float64), -1)
    old = torch.softmax(z.detach() + 0.5 * torch.randn(V, generator=g, dtype=torch.float64), -1)
    return z, q, old


def _expected_loss_grad(z, q, old, estimator, weights):
    """∇_z Σ_y w(y) · loss(y): every token y evaluated, weighted by the sampler's probability."""
    logp = torch.log_softmax(z, -1)
    per_token = sdl_per_token(logp, old.log(), q.log(), estimator=estimator)
    (weights * per_token).sum().backward()
    return z.grad.clone()


def test_rho_k3_gives_exact_reverse_kl_gradient_under_stale_sampler():
    z, q, old = _setup()
    grad = _expected_loss_grad(z, q, old, "rho_k3", old)
    pi = torch.softmax(z.detach(), -1)
    kl = (pi * (pi.log() - q.log())).sum()
    expected = pi * (pi.log() - q.log() - kl)  # ∇_z KL(π‖q)
    assert torch.allclose(grad, expected, atol=1e-9, rtol=0)
    assert grad.abs().max() > 1e-3  # not trivially zero


def test_k3_without_rho_gives_forward_kl_gradient_on_policy():
    z, q, _ = _setup(1)
    pi = torch.softmax(z.detach(), -1)
    grad = _expected_loss_grad(z, q, pi, "k3", pi)
    assert torch.allclose(grad, pi - q, atol=1e-9, rtol=0)
    kl_grad = pi * (pi.log() - q.log() - (pi * (pi.log() - q.log())).sum())
    assert not torch.allclose(grad, kl_grad, atol=1e-3)  # the negative control really differs


def test_k1_gives_zero_gradient_on_policy():
    z, q, _ = _setup(2)
    pi = torch.softmax(z.detach(), -1)
    grad = _expected_loss_grad(z, q, pi, "k1", pi)
    assert torch.allclose(grad, torch.zeros_like(grad), atol=1e-12)


def test_values_and_gradient_flow_only_through_student():
    student = torch.tensor([[-1.0, -2.0]], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([[-1.5, -2.0]], dtype=torch.float64, requires_grad=True)
    teacher = torch.tensor([[-0.5, -3.0]], dtype=torch.float64, requires_grad=True)
    out = sdl_per_token(student, old, teacher)
    ell = student.detach() - teacher.detach()
    rho = torch.exp(student.detach() - old.detach())
    assert torch.allclose(out.detach(), rho * (torch.exp(-ell) - 1 + ell))
    out.sum().backward()
    assert old.grad is None and teacher.grad is None
    # d/ds [e^{s-o} (e^{t-s} - 1 + s - t)] = ρ·ℓ
    assert torch.allclose(student.grad, rho * ell)


def test_is_clip_caps_rho_and_clamp_bounds_log_ratios():
    student = torch.tensor([0.0, -50.0])
    old = torch.tensor([-3.0, 0.0])
    teacher = torch.tensor([-1.0, 0.0])
    clipped = sdl_per_token(student, old, teacher, is_clip=2.0)
    ell = 1.0
    assert math.isclose(clipped[0].item(), 2.0 * (math.exp(-ell) - 1 + ell), rel_tol=1e-6)
    # ℓ = -50 is clamped to -20: k3 = e^{20} - 1 - 20, ρ = e^{-20}
    assert math.isclose(clipped[1].item(), math.exp(-20) * (math.exp(20) - 21), rel_tol=1e-5)
    assert torch.isfinite(clipped).all()


def test_float32_inputs_are_computed_in_float32_even_from_bf16():
    student = torch.tensor([-1.0, -2.0], dtype=torch.bfloat16)
    out = sdl_per_token(student, student, student - 0.5)
    assert out.dtype == torch.float32


def test_unknown_estimator_is_rejected_with_choices():
    with pytest.raises(ValueError, match="rho_k3"):
        sdl_per_token(torch.zeros(1), torch.zeros(1), torch.zeros(1), estimator="k2")


def test_masked_mean_and_empty_mask():
    values = torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, 5.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert masked_mean(values, mask).item() == pytest.approx(2.0)
    assert masked_mean(values, torch.zeros_like(mask)).item() == 0.0


def test_sanitize_logps_replaces_and_counts_non_finite():
    logps = torch.tensor([-1.0, float("nan"), float("inf"), float("-inf")])
    clean, count = sanitize_logps(logps)
    assert count == 3
    assert torch.isfinite(clean).all()
    assert clean[0].item() == -1.0 and clean[1].item() == -1e4
