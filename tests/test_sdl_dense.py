"""The dense SDL estimator, checked exactly (float64, no sampling) on hand-made logits.

The dense term at a position is the reverse KL KL(P‖Q) between the student's and the teacher's next-token
distributions: over the whole vocabulary, or over the sampled token, the teacher's top-k and one tail bucket. Its
gradient with respect to the student's logits z must be the analytic one:

- full vocabulary: ∇_z KL(softmax(z)‖q) = π ⊙ (log π − log q − KL);
- top-k + tail: ∇_z KL(P‖Q) of the (k+1)-bucket distributions = π_j · (ℓ_{b(j)} − KL_b), b(j) the bucket of token j.
"""

import math

import pytest
import torch

from skill_sd_trl.method.dense import placed, support_log_probs, teacher_reduce
from skill_sd_trl.method.losses import bucket_log_probs, dense_sdl_per_token, dense_support, sdl_per_token

V = 9


def _logits(seed):
    g = torch.Generator().manual_seed(seed)
    z = (1.5 * torch.randn(V, generator=g, dtype=torch.float64)).requires_grad_(True)
    teacher_logits = 1.5 * torch.randn(V, generator=g, dtype=torch.float64)
    return z, teacher_logits


def _full_kl_grad(z, q_log):
    pi = torch.softmax(z.detach(), -1)
    kl = (pi * (pi.log() - q_log)).sum()
    return pi * (pi.log() - q_log - kl), kl


def _top(teacher_logits, sampled, k):
    """The teacher's side as its scoring pass computes it: support = sampled token + top-k, and the tail."""
    ids = teacher_logits.topk(k).indices
    support_ids = torch.cat([torch.tensor([sampled]), ids])
    logps, tail = bucket_log_probs(teacher_logits, support_ids)
    return ids, logps[1:], logps[0], tail


def _dense_with_tail(z, teacher_logits, sampled, k):
    ids, topk_logps, sampled_logp, tail = _top(teacher_logits, sampled, k)
    support_ids, valid, teacher = dense_support(torch.tensor(sampled), sampled_logp, ids, topk_logps)
    student = support_log_probs(z[None], support_ids[None])[0][0]  # the training path's function
    value, student_tail = dense_sdl_per_token(student, teacher, valid, tail)
    return value, student_tail, support_ids[valid]


def _bucket_kl_grad(z, teacher_logits, members):
    """Analytic gradient and value of KL(P‖Q) between the bucketed distributions: one bucket per token of
    ``members``, one for all the others."""
    pi = torch.softmax(z.detach(), -1)
    q = torch.softmax(teacher_logits, -1)
    inside = torch.zeros(V, dtype=torch.bool)
    inside[members] = True
    p_tail, q_tail = pi[~inside].sum(), q[~inside].sum()
    ell = torch.where(inside, pi.log() - q.log(), (p_tail.log() - q_tail.log()).expand(V))
    kl = (pi[inside] * ell[inside]).sum() + p_tail * (p_tail.log() - q_tail.log())
    return pi * (ell - kl), kl


def test_full_vocabulary_gradient_is_the_exact_reverse_kl_gradient():
    z, teacher_logits = _logits(0)
    q_log = torch.log_softmax(teacher_logits, -1)
    value, tail = dense_sdl_per_token(torch.log_softmax(z, -1), q_log)
    value.backward()
    expected, kl = _full_kl_grad(z, q_log)
    assert tail is None
    assert value.item() == pytest.approx(kl.item(), rel=1e-12)
    assert torch.allclose(z.grad, expected, atol=1e-10, rtol=0)
    assert z.grad.abs().max() > 1e-2  # not trivially zero


@pytest.mark.parametrize("sampled_in_topk", [False, True])
def test_topk_with_tail_gradient_is_the_exact_gradient_of_the_bucketed_kl(sampled_in_topk):
    z, teacher_logits = _logits(1)
    k = 3
    order = teacher_logits.argsort(descending=True)
    sampled = int(order[1] if sampled_in_topk else order[-1])  # a top-k token, or the teacher's least likely one
    value, student_tail, members = _dense_with_tail(z, teacher_logits, sampled, k)
    value.backward()
    assert len(members) == (k if sampled_in_topk else k + 1)  # the repeated token counts once
    expected, kl = _bucket_kl_grad(z, teacher_logits, members)
    assert value.item() == pytest.approx(kl.item(), rel=1e-12)
    assert torch.allclose(z.grad, expected, atol=1e-10, rtol=0)
    pi = torch.softmax(z.detach(), -1)
    assert student_tail.item() == pytest.approx(1 - pi[members].sum().item(), rel=1e-12)
    # negative control: the bucketed gradient is not the full one (the tail is lumped), and its KL is a lower bound
    full, full_kl = _full_kl_grad(z, torch.log_softmax(teacher_logits, -1))
    assert not torch.allclose(z.grad, full, atol=1e-3)
    assert kl.item() < full_kl.item()


def test_topk_covering_the_vocabulary_drops_the_tail_and_is_exact():
    z, teacher_logits = _logits(2)
    value, student_tail, members = _dense_with_tail(z, teacher_logits, sampled=4, k=V)
    value.backward()
    expected, kl = _full_kl_grad(z, torch.log_softmax(teacher_logits, -1))
    assert len(members) == V and student_tail.item() == 0.0
    assert value.item() == pytest.approx(kl.item(), rel=1e-12)
    assert torch.allclose(z.grad, expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("stale", [False, True], ids=["on-policy", "stale-sampler"])
def test_full_vocabulary_equals_the_sampled_rho_k3_in_expectation(stale):
    """Σ_y π_old(y)·ρ·k3(y): the sampled estimator's exact expectation over the token at a position, on-policy
    (π_old = π, the issue's case) and with a stale sampler. Same value (KL) and gradient as the dense term, which
    uses no ρ: at a position it already is the expectation that ρ corrects the sampled token towards."""
    z, teacher_logits = _logits(3)
    q_log = torch.log_softmax(teacher_logits, -1)
    dense, _ = dense_sdl_per_token(torch.log_softmax(z, -1), q_log)
    (dense_grad,) = torch.autograd.grad(dense, z)
    logp = torch.log_softmax(z, -1)
    old = logp.detach() + (0.4 * torch.randn(V, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
                           if stale else 0.0)
    old = torch.log_softmax(old, -1)
    sampled = (old.exp() * sdl_per_token(logp, old, q_log, estimator="rho_k3")).sum()
    (sampled_grad,) = torch.autograd.grad(sampled, z)
    assert dense.item() == pytest.approx(sampled.item(), rel=1e-12)
    assert torch.allclose(dense_grad, sampled_grad, atol=1e-10, rtol=0)


def test_dense_values_over_a_batch_of_positions_are_independent_per_position():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(2, 3, V, generator=g, dtype=torch.float64, requires_grad=True)
    q_log = torch.log_softmax(torch.randn(2, 3, V, generator=g, dtype=torch.float64), -1)
    value, _ = dense_sdl_per_token(torch.log_softmax(z, -1), q_log)
    assert value.shape == (2, 3)
    value[1, 2].backward()
    assert z.grad[:, :2].abs().max() == 0 and z.grad[0].abs().max() == 0  # only its own logits move
    expected, _ = _full_kl_grad(z[1, 2], q_log[1, 2])
    assert torch.allclose(z.grad[1, 2], expected, atol=1e-10, rtol=0)


def test_clamp_bounds_an_impossible_teacher_token_and_keeps_everything_finite():
    z = torch.tensor([2.0, 0.0, -1.0], dtype=torch.float64, requires_grad=True)
    teacher = torch.tensor([-1e4, -0.1, -3.0], dtype=torch.float64)  # the sanitized floor on the student's favourite
    value, _ = dense_sdl_per_token(torch.log_softmax(z, -1), teacher, log_ratio_clamp=20.0)
    value.backward()
    pi = torch.softmax(z.detach(), -1)
    ell = torch.stack([torch.tensor(20.0, dtype=torch.float64), pi[1].log() + 0.1, pi[2].log() + 3.0])
    assert value.item() == pytest.approx((pi * ell).sum().item(), rel=1e-12)
    assert torch.isfinite(z.grad).all()
    assert torch.allclose(z.grad, pi * (ell - (pi * ell).sum()), atol=1e-12)  # Σ ∇P·clamp(ℓ): the clamped gradient


def test_a_support_with_no_tail_mass_on_either_side_stays_finite():
    """An empty complement (tail −inf) and a rounding-negative student tail must give no NaN value or gradient."""
    z = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    student = torch.log_softmax(z, -1)
    value, tail = dense_sdl_per_token(student, student.detach(), teacher_tail_logp=torch.tensor(float("-inf")))
    value.backward()
    assert value.item() == 0.0 and tail.item() == 0.0
    assert torch.isfinite(z.grad).all() and z.grad.abs().max() < 1e-15


def test_bucket_log_probs_are_exact_and_count_a_repeated_id_once():
    logits = torch.tensor([[3.0, 1.0, 0.0, -2.0, 0.5]], dtype=torch.float64)
    logps, tail = bucket_log_probs(logits, torch.tensor([[1, 0, 1]]))
    p = torch.softmax(logits, -1)
    assert torch.allclose(logps.exp(), p[:, [1, 0, 1]], rtol=1e-14)
    assert tail.exp().item() == pytest.approx(p[0, 2:].sum().item(), rel=1e-14)
    _, empty = bucket_log_probs(logits, torch.tensor([[0, 1, 2, 3, 4]]))
    assert empty.item() == float("-inf")


def test_teacher_reduce_gives_top_k_sampled_token_and_tail_or_the_whole_vocabulary():
    g = torch.Generator().manual_seed(5)
    logits = 2 * torch.randn(2, 3, V, generator=g)
    labels = torch.randint(0, V, (2, 3), generator=g)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    temperature = 0.7
    logp = torch.log_softmax(logits / temperature, -1)
    keep = mask.bool()
    reduce = teacher_reduce(4, temperature)  # on the labelled positions only, put back in place
    label, topk_logps, ids, tail = (placed(v, keep) for v in reduce(logits[keep], labels[keep], keep, slice(0, 2)))
    assert torch.allclose(label[keep], logp.gather(-1, labels[..., None]).squeeze(-1)[keep], atol=1e-6)
    assert torch.equal(ids[keep], logp.topk(4, -1).indices[keep])
    assert torch.allclose(topk_logps[keep], logp.topk(4, -1).values[keep], atol=1e-6)
    inside = torch.zeros(2, 3, V, dtype=torch.bool).scatter(-1, torch.cat([labels[..., None], ids], -1), True)
    assert torch.allclose(tail.exp()[keep], (logp.exp() * ~inside).sum(-1)[keep], atol=1e-6)
    assert (label[~keep] == 0).all() and (topk_logps[~keep] == 0).all() and (tail[~keep] == 0).all()
    full_label, full = (placed(v, keep) for v in teacher_reduce(None, temperature)(logits[keep], labels[keep], keep,
                                                                                 slice(0, 2)))
    assert torch.allclose(full[keep], logp[keep], atol=1e-6) and torch.allclose(full_label, label, atol=1e-6)


def test_the_student_tail_is_one_minus_the_support_mass():
    z, teacher_logits = _logits(6)
    _, student_tail, members = _dense_with_tail(z, teacher_logits, sampled=0, k=2)
    assert student_tail.item() == pytest.approx(1 - math.fsum(torch.softmax(z.detach(), -1)[members].tolist()),
                                                rel=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_support_log_probs_has_autograd_s_values_and_gradient_with_one_buffer(temperature, monkeypatch):
    """The memory-lean custom backward equals autograd's gradient of ``log_softmax(z / T)[ids]`` (float64, repeated
    ids, several position chunks)."""
    from skill_sd_trl.method import dense

    monkeypatch.setattr(dense, "POSITION_CHUNK", 2)  # 5 positions: three chunks
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(5, V, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(0, V, (5, 4), generator=g)
    ids[0, 1] = ids[0, 0]  # a repeated id gets both slots' gradient
    weights = torch.randn(5, 4, generator=g, dtype=torch.float64)
    got, lse = dense.support_log_probs(logits, ids, temperature)
    (got * weights).sum().backward()
    leaf = logits.detach().requires_grad_(True)
    expected = torch.log_softmax(leaf / temperature, -1).gather(-1, ids)
    (expected * weights).sum().backward()
    assert torch.allclose(got, expected, atol=1e-12)
    assert torch.allclose(lse, torch.logsumexp(leaf.detach() / temperature, -1), atol=1e-12)
    assert torch.allclose(logits.grad, leaf.grad, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x: dense.support_log_probs(x, ids, temperature)[0],
                                    (logits.detach().requires_grad_(True),))


def test_support_log_probs_keeps_bfloat16_logits_and_computes_in_float32():
    from skill_sd_trl.method.dense import support_log_probs

    g = torch.Generator().manual_seed(8)
    logits = torch.randn(3, V, generator=g).to(torch.bfloat16).requires_grad_(True)
    ids = torch.randint(0, V, (3, 2), generator=g)
    out, _ = support_log_probs(logits, ids)
    assert out.dtype == torch.float32
    assert torch.allclose(out, torch.log_softmax(logits.detach().float(), -1).gather(-1, ids), atol=1e-6)
    out.sum().backward()
    assert logits.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("entropy_grad", [False, True])
def test_student_reduce_gives_the_parent_its_log_probs_and_entropies(entropy_grad):
    """Slot 0 of the support is the sampled token: the parent's log-prob; the entropy carries a gradient only when the
    parent's entropy bonus needs one, and then the right one."""
    from skill_sd_trl.method.dense import StudentDense

    g = torch.Generator().manual_seed(9)
    logits = torch.randn(4, V, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, V, (4,), generator=g)
    support_ids = torch.cat([labels[:, None], torch.randint(0, V, (4, 3), generator=g)], 1).view(2, 2, 4)
    keep = torch.ones(2, 2, dtype=torch.bool)
    logps, entropy, _ = StudentDense(support_ids, 0.5, entropy_grad).reduce(logits, labels, keep, slice(0, 2))
    logp = torch.log_softmax(logits / 0.5, -1)
    reference = -(logp.exp() * logp).sum(-1)
    assert torch.allclose(logps, logp.gather(-1, labels[:, None])[:, 0], atol=1e-12)
    assert torch.allclose(entropy, reference, atol=1e-12)
    assert entropy.requires_grad == entropy_grad
    if entropy_grad:
        (got,) = torch.autograd.grad(entropy.sum(), logits)
        (expected,) = torch.autograd.grad(reference.sum(), logits)
        assert torch.allclose(got, expected, atol=1e-12)
