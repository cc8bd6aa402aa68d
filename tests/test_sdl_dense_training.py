"""The dense estimator inside the trainer, on the tiny model: the teacher's support comes from its one scoring pass,
the student's log-probs over it from a logits pass (padded or shared-prompt) that matches the fused head, environment
tokens and rows without a skill add exactly nothing, and short training runs (LoRA, with and without the student
prompt cache, full fine-tuning) give a finite, nonzero SDL and gradient; the gradient-norm diagnostic works with every
estimator and reduction."""

import math

import pytest
import torch
from _trainer_utils import first_batch, toy_dataset, trainer

from skill_sd_trl.method.dense import SUPPORT_IDS, SUPPORT_LOGPS, TAIL_LOGP, StudentDense, logits_pass, placed
from skill_sd_trl.method.losses import dense_sdl_per_token, dense_support
from skill_sd_trl.trl_private import parent_logps_pass

TOPK = 8


@pytest.fixture(scope="module")
def dense(tiny_model_path, tmp_path_factory):
    """A trainer with the dense estimator and a generation batch of task-0 (skill) × 4 and task-1 (none) × 4."""
    tr = trainer(tiny_model_path, tmp_path_factory.mktemp("dense"), dataset=toy_dataset(skills="even"),
                 per_device_train_batch_size=8, num_generations=4, sdl_estimator="dense", sdl_topk=TOPK)
    rows = first_batch(tr)
    assert [bool(r["skill"]) for r in rows] == [True] * 4 + [False] * 4
    batch = tr._generate_and_score_completions(rows)
    return tr, rows, batch


def _inputs(batch):
    return (torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1),
            torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1), batch["completion_ids"].size(1))


def _support(batch):
    return dense_support(batch["completion_ids"], batch["teacher_per_token_logps"], batch[SUPPORT_IDS],
                         batch[SUPPORT_LOGPS])[0]


def test_the_teacher_scoring_pass_carries_its_top_k_and_tail_in_the_batch(dense):
    tr, rows, batch = dense
    b, c = batch["completion_ids"].shape
    assert batch[SUPPORT_IDS].shape == (b, c, TOPK) and batch[SUPPORT_IDS].dtype == torch.long
    assert batch[SUPPORT_LOGPS].shape == (b, c, TOPK) and batch[TAIL_LOGP].shape == (b, c)
    assert batch["teacher_row_mask"].tolist() == [1.0] * 4 + [0.0] * 4
    for key in (SUPPORT_IDS, SUPPORT_LOGPS, TAIL_LOGP, "teacher_per_token_logps"):
        assert (batch[key][4:] == 0).all(), key  # no teacher signal, nothing carried
    # against a hand-made forward of the teacher on row 0: top-k ids, their log-probs, the tail, the sampled token
    prompt = tr._render(rows[0]["prompt"], rows[0]["skill"])
    ids = tr.processing_class.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False)
    n = int(batch["completion_mask"][0].sum())
    full = torch.tensor([list(ids) + batch["completion_ids"][0, :n].tolist()])
    with torch.no_grad(), tr.teacher.activated() as model:
        logp = torch.log_softmax(model(input_ids=full).logits[0, -n - 1:-1].float(), -1)
    top = logp.topk(TOPK, -1)
    assert torch.equal(batch[SUPPORT_IDS][0, :n], top.indices)
    assert torch.allclose(batch[SUPPORT_LOGPS][0, :n], top.values, atol=1e-5)
    sampled = batch["completion_ids"][0, :n]
    assert torch.allclose(batch["teacher_per_token_logps"][0, :n], logp.gather(1, sampled[:, None])[:, 0], atol=1e-5)
    inside = torch.zeros_like(logp, dtype=torch.bool).scatter(1, torch.cat([sampled[:, None], top.indices], 1), True)
    assert torch.allclose(batch[TAIL_LOGP][0, :n].exp(), (logp.exp() * ~inside).sum(1), atol=1e-5)


@pytest.mark.parametrize("prompt_cache", [True, False], ids=["shared-prompt-cache", "padded"])
def test_the_dense_teacher_needs_no_extra_forward_and_agrees_with_the_sampled_scoring(dense, prompt_cache):
    tr, rows, batch = dense
    sub = {k: batch[k][:4] for k in ("completion_ids", "completion_mask")}
    prompts = [tr._render(r["prompt"], r["skill"]) for r in rows[:4]]
    backbone = tr.model.get_base_model().model
    calls = []
    hook = backbone.register_forward_hook(lambda *a: calls.append(1))
    tr.args.teacher_prompt_cache = prompt_cache
    try:
        keys = tr._teacher_logps(sub, prompts, "train")
        dense_calls = len(calls)
        tr.args.sdl_estimator = "rho_k3"
        sampled = tr._teacher_logps(sub, prompts, "train")
    finally:
        tr.args.sdl_estimator, tr.args.teacher_prompt_cache = "dense", True
        hook.remove()
    assert dense_calls == len(calls) - dense_calls  # as many teacher forwards as the sampled estimator's scoring
    assert torch.allclose(keys["teacher_per_token_logps"], sampled, atol=1e-5)
    assert torch.equal(keys[SUPPORT_IDS], batch[SUPPORT_IDS][:4])  # padded and cached scoring agree
    assert torch.allclose(keys[SUPPORT_LOGPS], batch[SUPPORT_LOGPS][:4], atol=1e-5)
    assert torch.allclose(keys[TAIL_LOGP], batch[TAIL_LOGP][:4], atol=1e-5)


def test_the_student_logits_pass_matches_the_fused_head_padded_and_shared(dense):
    tr, _, batch = dense
    input_ids, attention_mask, keep = _inputs(batch)
    support = _support(batch)
    fused_logps, fused_entropy, _ = parent_logps_pass(tr)(tr.model, input_ids, attention_mask, keep,
                                                          compute_entropy=True)
    lora = [p for n, p in tr.model.named_parameters() if p.requires_grad]
    weights = torch.randn(support.shape, generator=torch.Generator().manual_seed(0))
    results = {}
    for shared in (False, True):
        student = StudentDense(support, tr.args.temperature, entropy_grad=False)
        if shared:
            from skill_sd_trl.method.shared_prompts import shared_prompt_pass

            out = student.take(shared_prompt_pass(tr.model, input_ids, attention_mask, keep, True,
                                                  tr.accelerator.autocast, reduce=student.reduce))
        else:
            out = student.padded_pass(tr.model, input_ids, attention_mask, keep, None, False, tr.accelerator.autocast)
        logps, entropy, _ = out
        mask = batch["completion_mask"].bool()
        assert torch.allclose(logps, fused_logps.detach(), atol=1e-5) and (logps[~mask] == 0).all()
        assert torch.allclose(entropy, fused_entropy.detach(), atol=1e-5)
        assert torch.allclose(student.support_logps[..., 0], logps, atol=1e-6)  # slot 0 is the sampled token
        grads = torch.autograd.grad((student.support_logps * weights * mask[..., None]).sum(), lora)
        results[shared] = (student.support_logps.detach(), torch.cat([g.reshape(-1) for g in grads]))
    assert torch.allclose(results[True][0], results[False][0], atol=1e-5)
    assert torch.allclose(results[True][1], results[False][1], atol=1e-5, rtol=1e-4)
    assert results[False][1].abs().max() > 0


def test_rows_without_a_skill_add_nothing_and_skill_rows_give_a_finite_nonzero_gradient(dense):
    tr, _, batch = dense
    input_ids, attention_mask, keep = _inputs(batch)
    student = StudentDense(_support(batch), tr.args.temperature, entropy_grad=False)
    logps, _, _ = student.padded_pass(tr.model, input_ids, attention_mask, keep, None, False, tr.accelerator.autocast)
    support = student.support_logps
    support.retain_grad()
    loss = tr._sdl_loss(logps, batch, support)
    lora = [p for p in tr.model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, lora, retain_graph=True)
    norm = torch.cat([g.reshape(-1) for g in grads]).norm()
    assert torch.isfinite(loss) and loss.item() > 0
    assert torch.isfinite(norm) and norm > 0
    loss.backward()
    assert (support.grad[4:] == 0).all()  # no skill: exactly no gradient
    assert support.grad[:4].abs().max() > 0
    sdl = tr._metrics["train"]["self_distillation/sdl"][-1]
    assert math.isfinite(sdl) and sdl > 0
    assert 0 <= tr._metrics["train"]["self_distillation/dense_tail_mass"][-1] <= 1


def test_environment_tokens_contribute_exactly_nothing_and_the_sampler_ratios_are_not_used(dense):
    """Hand-made: 2 rows × 4 positions over V = 6, positions 1-2 of row 0 and 3 of row 1 are environment tokens (tool
    mask 0) and carry garbage teacher values (NaN, ±inf); the loss is the action positions' bucketed KL over their
    count, and no environment logit gets any gradient. Old log-probs and vLLM's ratio change nothing."""
    tr, _, _ = dense
    v, k = 6, 2
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 4, v, generator=g, dtype=torch.float64, requires_grad=True)
    teacher_logits = torch.randn(2, 4, v, generator=g, dtype=torch.float64)
    completion_ids = torch.randint(0, v, (2, 4), generator=g)
    teacher_logp = torch.log_softmax(teacher_logits, -1)
    ids = teacher_logp.topk(k, -1).indices
    inside = torch.zeros(2, 4, v, dtype=torch.bool).scatter(-1, torch.cat([completion_ids[..., None], ids], -1), True)
    tail = torch.logsumexp(teacher_logp.masked_fill(inside, float("-inf")), -1)
    tool = torch.tensor([[1, 0, 0, 1], [1, 1, 1, 0]])
    env = tool == 0
    inputs = {
        "completion_ids": completion_ids, "completion_mask": torch.ones(2, 4, dtype=torch.long), "tool_mask": tool,
        "teacher_row_mask": torch.ones(2), "num_items_in_batch": torch.tensor(5),
        "teacher_per_token_logps": teacher_logp.gather(-1, completion_ids[..., None])[..., 0].masked_fill(env, float("nan")),
        SUPPORT_IDS: ids, SUPPORT_LOGPS: teacher_logp.gather(-1, ids).masked_fill(env[..., None], float("inf")),
        TAIL_LOGP: tail.masked_fill(env, float("nan")),
    }
    support_ids = _support(inputs)
    student = StudentDense(support_ids, 1.0, entropy_grad=False)
    keep = torch.ones(2, 4, dtype=torch.bool)
    logps, _, support = (placed(v, keep) for v in student.reduce(z[keep], completion_ids[keep], keep, slice(0, 2)))
    tr.args.loss_type, tr.loss_type = "bnpo", "bnpo"  # normalizer: the 5 action tokens (GA = 1 here)
    try:
        loss = tr._sdl_loss(logps, inputs, support)
        loss.backward()
        changed = tr._sdl_loss(logps.detach(), {**inputs, "old_per_token_logps": logps.detach() - 3.0,
                                                "importance_sampling_ratio": torch.full((2, 4), 0.25)}, support)
    finally:
        tr.args.loss_type, tr.loss_type = "dapo", "dapo"
    # expected: the bucketed KL of each action position, from the hand-made distributions
    pi = torch.softmax(z.detach(), -1)
    q = teacher_logp.exp()
    expected = 0.0
    for i in range(2):
        for j in range(4):
            if env[i, j]:
                continue
            members = inside[i, j]
            p_tail, q_tail = pi[i, j][~members].sum(), q[i, j][~members].sum()
            expected += ((pi[i, j][members] * (pi[i, j][members].log() - q[i, j][members].log())).sum()
                         + p_tail * (p_tail.log() - q_tail.log())).item()
    assert loss.item() == pytest.approx(expected / 5, rel=1e-10)
    assert changed.item() == loss.item()
    assert (z.grad[env] == 0).all()
    assert torch.isfinite(z.grad).all() and z.grad[~env].abs().max() > 0


def _run(path, tmp_path, **overrides):
    peft = overrides.pop("peft", True)
    tr = trainer(path, tmp_path, peft=peft, dataset=toy_dataset(skills="all"), log_loss_grad_norms=True, **overrides)
    tr.train()
    return [row for row in tr.state.log_history if "loss" in row]


@pytest.mark.parametrize("peft,cache", [(True, False), (True, True), (False, True)],
                         ids=["lora", "lora-student-prompt-cache", "full-finetune-student-prompt-cache"])
def test_two_dense_training_steps_give_a_finite_nonzero_sdl_and_gradient(tiny_model_path, tmp_path, peft, cache):
    logs = _run(tiny_model_path, tmp_path, peft=peft, sdl_estimator="dense", student_prompt_cache=cache)
    assert len(logs) == 2
    for row in logs:
        assert math.isfinite(row["loss"])
        assert math.isfinite(row["self_distillation/sdl"]) and row["self_distillation/sdl"] > 0
        assert row["self_distillation/grad_norm"] > 0 and math.isfinite(row["self_distillation/grad_norm"])
        assert 0 < row["self_distillation/dense_tail_mass"] < 1 and 0 < row["teacher/dense_tail_mass"] < 1


def test_the_student_prompt_cache_gives_the_dense_sdl_of_the_padded_pass(tiny_model_path, tmp_path):
    padded = _run(tiny_model_path, tmp_path / "padded", sdl_estimator="dense")
    cached = _run(tiny_model_path, tmp_path / "cached", sdl_estimator="dense", student_prompt_cache=True)
    for key in ("self_distillation/sdl", "self_distillation/grad_norm", "loss"):
        assert cached[0][key] == pytest.approx(padded[0][key], rel=1e-4, abs=1e-9), key


@pytest.mark.parametrize("estimator,reduction,topk", [("rho_k3", "sequence_sum", 64), ("dense", "token_mean", 0),
                                                      ("dense", "sequence_sum", 64), ("k3", "sequence_sum", 64)])
def test_the_gradient_norm_ratio_is_logged_with_every_estimator_and_reduction(tiny_model_path, tmp_path, estimator,
                                                                              reduction, topk):
    logs = _run(tiny_model_path, tmp_path, sdl_estimator=estimator, sdl_reduction=reduction, sdl_topk=topk)
    row = logs[0]
    ratio = row["self_distillation/grad_norm_ratio"]
    assert math.isfinite(ratio) and ratio > 0
    assert ratio == pytest.approx(row["self_distillation/grad_norm"] / row["self_distillation/grpo_grad_norm"],
                                  rel=1e-3)
    expected = row["self_distillation/sdl_sequence" if reduction == "sequence_sum" else "self_distillation/sdl"]
    assert row["self_distillation/weighted_sdl"] == pytest.approx(0.5 * expected, rel=1e-5)  # sdl_coef = 0.5
    assert ("self_distillation/dense_tail_mass" in row) == (estimator == "dense" and topk > 0)


def test_sequence_sum_weighs_like_token_mean_times_the_mean_length(tiny_model_path, tmp_path):
    """Same seed, same rollouts: the SDL gradient under sequence_sum is the token mean's times the tokens per
    sequence (every completion of this run has max_completion_length = 6 tokens)."""
    token = _run(tiny_model_path, tmp_path / "token")
    sequence = _run(tiny_model_path, tmp_path / "sequence", sdl_reduction="sequence_sum")
    assert sequence[0]["self_distillation/grad_norm"] == pytest.approx(6 * token[0]["self_distillation/grad_norm"],
                                                                       rel=1e-5)


def test_logits_pass_chunks_like_the_parent(dense):
    tr, _, batch = dense
    input_ids, attention_mask, keep = _inputs(batch)
    whole, _ = logits_pass(tr.model, input_ids, attention_mask, keep, lambda z, y, m, r: (z.sum(-1),),
                           tr.accelerator.autocast)
    chunked, _ = logits_pass(tr.model, input_ids, attention_mask, keep, lambda z, y, m, r: (z.sum(-1),),
                             tr.accelerator.autocast, batch_size=3)
    assert whole[0].shape == batch["completion_ids"].shape
    assert torch.allclose(whole[0], chunked[0], atol=1e-4)
    # only labelled positions are projected: a padded completion token gets no logits (0 in place)
    mask = attention_mask.clone()
    mask[0, -2:] = 0
    masked, _ = logits_pass(tr.model, input_ids, mask, keep, lambda z, y, m, r: (z.new_ones(z.size(0)),),
                            tr.accelerator.autocast)
    assert masked[0].sum().item() == mask[:, -keep:].sum().item() and (masked[0][0, -2:] == 0).all()


def test_the_carried_buckets_sum_to_one_so_a_student_equal_to_the_teacher_has_zero_kl(dense):
    _, _, batch = dense
    _, valid, teacher = dense_support(batch["completion_ids"][:4], batch["teacher_per_token_logps"][:4],
                                      batch[SUPPORT_IDS][:4], batch[SUPPORT_LOGPS][:4])
    value, student_tail = dense_sdl_per_token(teacher, teacher, valid, batch[TAIL_LOGP][:4])
    mask = batch["completion_mask"][:4].bool()
    assert value[mask].abs().max() < 1e-5
    assert torch.allclose(student_tail[mask], batch[TAIL_LOGP][:4][mask].exp(), atol=1e-5)
