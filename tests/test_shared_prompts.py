"""Shared prompt encoding (skill_sd_trl/method/shared_prompts.py): the student's log-prob pass with each group's prompt
encoded once gives the parent's log-probs, entropies and gradients."""

import pytest
import torch
from trl import GRPOTrainer

from _trainer_utils import trainer
from skill_sd_trl.method.shared_prompts import group_rows, length_buckets, shared_prompt_pass, unpadded_prompts


def _batch(tr):
    """Left-padded prompts (two groups of two rows with different prompt lengths, one row alone) + completions with
    padding after their ends, as the parent's loss builds them."""
    pad = tr.processing_class.pad_token_id
    texts = ["short", "a much longer question, several tokens", "short", "alone here", "a much longer question, "
             "several tokens"]
    prompts = [tr._tokenize_prompts([[{"role": "user", "content": t}]])[0][0] for t in texts]
    width = max(map(len, prompts))
    prompt_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    prompt_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    completion = torch.tensor([[5, 6, 7, pad], [8, 9, pad, pad], [10, 11, 12, 13], [14, 15, pad, pad], [8, 16, 17, 18]])
    completion_mask = (completion != pad).long()
    return torch.cat([prompt_ids, completion], 1), torch.cat([prompt_mask, completion_mask], 1), completion_mask


def _lora(model):
    return [p for n, p in model.named_parameters() if p.requires_grad]


def test_group_rows_and_unpadded_prompts():
    assert dict(group_rows([[1, 2], [3], [1, 2]])) == {(1, 2): [0, 2], (3,): [1]}
    ids = torch.tensor([[0, 0, 5, 6], [7, 8, 9, 1]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert unpadded_prompts(ids, mask) == [[5, 6], [7, 8, 9, 1]]


def test_length_buckets_minimize_padded_positions_plus_a_cost_per_call():
    lengths = [100, 12, 170, 30, 170, 100]
    # one call: 6 rows x 170 = 1020 (+48); cut as {12, 30} {100, 100} {170, 170}: 60 + 200 + 340 = 600 (+3 x 48)
    assert length_buckets(lengths, call_cost=48) == [[1, 3], [0, 5], [2, 4]]
    assert length_buckets(lengths, call_cost=10_000) == [[1, 3, 0, 5, 2, 4]]  # calls too dear: one bucket
    assert length_buckets([5, 5, 5], call_cost=0) == [[0, 1, 2]]  # equal lengths never split (ties keep one call)
    assert sorted(i for b in length_buckets(lengths, call_cost=0) for i in b) == list(range(6))
    assert length_buckets([]) == []


def _lora_model(tr):
    model = tr.model
    model.train()
    with torch.no_grad():  # a non-trivial adapter, so that LoRA gradients flow through the shared prompt's cache
        for p in _lora(model):
            p.add_(0.3 * torch.randn_like(p))
    return model


def _values_and_grads(model, fn, input_ids, attention_mask, completion_mask):
    model.zero_grad()
    logps, entropy, _ = fn(model, input_ids, attention_mask, completion_mask.size(1), compute_entropy=True)
    (logps * completion_mask).sum().backward()
    return logps.detach(), entropy.detach(), [p.grad.clone() for p in _lora(model)]


def _assert_same(shared, plain, completion_mask):
    m = completion_mask.bool()
    assert torch.allclose(shared[0][m], plain[0][m], atol=1e-5)
    assert torch.allclose(shared[1][m], plain[1][m], atol=1e-4)
    assert not shared[0][~m].any() and not shared[1][~m].any()  # positions after a row's end: zeros
    assert len(shared[2]) > 0 and any(g.abs().sum() > 0 for g in shared[2])
    for a, b in zip(shared[2], plain[2]):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_student_pass_with_shared_prompts_equals_the_parents_padded_pass_values_and_gradients(tiny_model_path, tmp_path):
    tr = trainer(tiny_model_path, tmp_path, student_prompt_cache=True)
    model = _lora_model(tr)
    input_ids, attention_mask, completion_mask = _batch(tr)
    keep = completion_mask.size(1)
    shared = _values_and_grads(model, tr._get_per_token_logps_and_entropies, input_ids, attention_mask,
                               completion_mask)
    plain = _values_and_grads(model, lambda *a, **k: GRPOTrainer._get_per_token_logps_and_entropies(tr, *a, **k),
                              input_ids, attention_mask, completion_mask)
    _assert_same(shared, plain, completion_mask)
    # the shared pass really ran (2 prompt encodings for 4 of the rows, not the padded batch)
    assert shared_prompt_pass(model, input_ids, attention_mask, keep, True, tr.accelerator.autocast) is not None


def test_length_buckets_of_one_group_give_the_parents_values_and_gradients(tiny_model_path, tmp_path):
    """call cost 0: every row of a different length runs alone, from its group's one prompt encoding (expanded)."""
    tr = trainer(tiny_model_path, tmp_path, student_prompt_cache=True)
    model = _lora_model(tr)
    input_ids, attention_mask, completion_mask = _batch(tr)
    rows_split = length_buckets([3, 4], call_cost=0)
    assert rows_split == [[0], [1]]  # the "short" group (rows 0 and 2: 3 and 4 tokens) is cut in two

    def bucketed(model, input_ids, attention_mask, keep, compute_entropy):
        return shared_prompt_pass(model, input_ids, attention_mask, keep, compute_entropy, tr.accelerator.autocast,
                                  bucket_call_cost=0)

    shared = _values_and_grads(model, bucketed, input_ids, attention_mask, completion_mask)
    plain = _values_and_grads(model, lambda *a, **k: GRPOTrainer._get_per_token_logps_and_entropies(tr, *a, **k),
                              input_ids, attention_mask, completion_mask)
    _assert_same(shared, plain, completion_mask)


def test_rows_without_a_repeated_prompt_use_the_parents_pass_unchanged(tiny_model_path, tmp_path):
    tr = trainer(tiny_model_path, tmp_path, student_prompt_cache=True)
    input_ids, attention_mask, completion_mask = _batch(tr)
    rows = [0, 1, 3]  # three different prompts
    keep = completion_mask.size(1)
    assert shared_prompt_pass(tr.model, input_ids[rows], attention_mask[rows], keep, True,
                              tr.accelerator.autocast) is None
    with torch.no_grad():
        ours = tr._get_per_token_logps_and_entropies(tr.model, input_ids[rows], attention_mask[rows], keep)[0]
        parent = GRPOTrainer._get_per_token_logps_and_entropies(tr, tr.model, input_ids[rows], attention_mask[rows],
                                                                keep)[0]
    assert torch.equal(ours, parent)


@pytest.mark.parametrize("sdl_coef", [0.0, 0.5])
def test_training_with_the_student_prompt_cache_follows_the_padded_run(tiny_model_path, tmp_path, sdl_coef):
    runs = {}
    for cached in (False, True):
        tr = trainer(tiny_model_path, tmp_path / str(cached), student_prompt_cache=cached, sdl_coef=sdl_coef,
                     max_steps=2, dataset=None)
        tr.train()
        runs[cached] = ([h["loss"] for h in tr.state.log_history if "loss" in h],
                        {n: p.detach().clone() for n, p in tr.model.named_parameters() if ".default." in n})
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-3, abs=1e-6)
    for n, w in runs[False][1].items():
        assert torch.allclose(runs[True][1][n], w, atol=1e-4), n
