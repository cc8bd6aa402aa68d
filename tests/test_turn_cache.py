"""TurnCache (skill_sd_trl/rollout/turn_cache.py): multi-turn sampling that keeps each episode's KV cache between turns samples
what plain generation samples, and encodes only what each context added."""

import os

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from skill_sd_trl.rollout.turn_cache import MIN_SHARED_PREFIX, TurnCache, _shared_prefix_length


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_path):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).eval(), \
        AutoTokenizer.from_pretrained(tiny_model_path)


def _plain(model, contexts, n, pad, eos):
    """What the episode loop got before: every context left-padded and encoded from scratch."""
    width = max(map(len, contexts))
    ids = torch.tensor([[pad] * (width - len(c)) + c for c in contexts])
    mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in contexts])
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, do_sample=False, pad_token_id=pad,
                         eos_token_id=eos)[:, width:].tolist()
    return [r[: next((i for i, t in enumerate(r) if t in eos), len(r) - 1) + 1] for r in out]


class ForwardSpy:
    """Counts the token columns each forward of the model reads."""

    def __init__(self, model):
        self.widths, self.rows = [], []
        self.handle = model.model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        self.widths.append(kwargs["input_ids"].shape[1])
        self.rows.append(kwargs["input_ids"].shape[0])


def test_three_turns_with_early_ends_and_finished_episodes_sample_what_plain_generation_samples(model_and_tokenizer):
    model, tok = model_and_tokenizer
    pad = tok.pad_token_id
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in ("hello there, how are you", "a b")]
    contexts = [prompts[0]] * 3 + [prompts[1]] * 2  # two groups sharing a prompt each, different lengths
    # an end-of-answer token the tiny random model emits mid-answer in some rows only, so answers end unevenly
    probe = _plain(model, contexts, 6, pad, [])
    eos = [next(t for row in probe for t in row[1:4] if any(t not in r for r in probe))]
    cache = TurnCache(pad, eos)
    plain_ctx, cached_ctx = [list(c) for c in contexts], [list(c) for c in contexts]
    lengths = set()
    for turn in range(3):
        expected = _plain(model, plain_ctx, 6, pad, eos)
        got = cache.generate(model, cached_ctx, max_new_tokens=6, do_sample=False, eos_token_id=eos)
        assert got == expected, turn
        lengths |= {len(a) for a in got}
        observations = [tok(f" seen {turn}" * (i + 1), add_special_tokens=False)["input_ids"]
                        for i in range(len(got))]
        keep = [i for i in range(len(got)) if i != turn]  # one episode finishes each turn
        plain_ctx = [plain_ctx[i] + expected[i] + observations[i] for i in keep]
        cached_ctx = [cached_ctx[i] + got[i] + observations[i] for i in keep]
    assert len(lengths) > 1  # some answers ended early (EOS), others ran to the limit


def test_prompts_are_encoded_once_and_later_turns_read_only_what_was_added(model_and_tokenizer):
    model, tok = model_and_tokenizer
    pad, eos = tok.pad_token_id, [tok.eos_token_id]
    prompt = tok("one shared prompt of several tokens", add_special_tokens=False)["input_ids"]
    cache = TurnCache(pad, eos)
    spy = ForwardSpy(model)
    try:
        first = cache.generate(model, [prompt] * 4, max_new_tokens=3, do_sample=False, eos_token_id=eos)
        assert spy.widths[0] == len(prompt) - 1  # one prefill for the group, not four
        assert spy.widths[1] == 1  # then only the prompt's last token, once per row, for the first sampled token
        spy.widths.clear()
        added = tok(" and an observation", add_special_tokens=False)["input_ids"]
        contexts = [prompt + a + added for a in first]
        new_per_row = [len(c) - len(held) for c, held in zip(contexts, cache._held)]
        # the cache holds each row's prompt and answer but the last sampled token (never fed back by generate)
        assert all(n in (len(added), len(added) + 1) for n in new_per_row)
        cache.generate(model, contexts, max_new_tokens=3, do_sample=False, eos_token_id=eos)
        # the next turn reads only what each context added, not the whole context again
        assert spy.widths[0] == max(new_per_row) < len(contexts[0])
    finally:
        spy.handle.remove()


def test_distinct_prompts_encode_their_common_prefix_once_and_sample_what_plain_generation_samples(model_and_tokenizer):
    model, tok = model_and_tokenizer
    pad, eos = tok.pad_token_id, [tok.eos_token_id]
    rules = tok("the rules of the game, the same for every level: push each box onto a target square",
                add_special_tokens=False)["input_ids"]
    assert len(rules) >= MIN_SHARED_PREFIX
    boards = [tok(t, add_special_tokens=False)["input_ids"] for t in (" level one", " the second level is longer", " 3")]
    contexts = [rules + boards[0], rules + boards[1], rules + boards[1], rules + boards[2]]  # 3 distinct, one twice
    shared = len(rules) + len(os.path.commonprefix(boards))
    cache = TurnCache(pad, eos)
    spy = ForwardSpy(model)
    try:
        got = cache.generate(model, contexts, max_new_tokens=5, do_sample=False, eos_token_id=eos)
        # the common prefix once (one row), then each distinct prompt's own tokens but its last (three rows)
        rest = max(len(c) for c in contexts) - shared
        assert (spy.widths[:2], spy.rows[:2]) == ([shared, rest - 1], [1, 3])
    finally:
        spy.handle.remove()
    assert got == _plain(model, contexts, 5, pad, eos)
    added = tok(" then an observation", add_special_tokens=False)["input_ids"]
    nxt = [c + a + added for c, a in zip(contexts, got)]
    assert cache.generate(model, nxt, max_new_tokens=5, do_sample=False, eos_token_id=eos) == _plain(model, nxt, 5, pad,
                                                                                                      eos)


def test_shared_prefix_length_leaves_every_prompt_a_token_of_its_own():
    long = tuple(range(40))
    assert _shared_prefix_length([long]) == 0  # one prompt: nothing to share
    assert _shared_prefix_length([long, long[:30] + (99,)]) == 30
    assert _shared_prefix_length([long, long[:25]]) == 24  # a prompt that is the other's prefix keeps its last token
    assert _shared_prefix_length([long, long[:MIN_SHARED_PREFIX - 1] + (99,)]) == 0  # too little to be worth a forward


def test_a_context_that_does_not_extend_the_cache_is_encoded_afresh(model_and_tokenizer):
    model, tok = model_and_tokenizer
    pad, eos = tok.pad_token_id, [tok.eos_token_id]
    cache = TurnCache(pad, eos)
    a = tok("first batch", add_special_tokens=False)["input_ids"]
    b = tok("another batch entirely", add_special_tokens=False)["input_ids"]
    cache.generate(model, [a, a], max_new_tokens=4, do_sample=False, eos_token_id=eos)
    assert cache._rows_extended_by([b, b]) is None  # a new batch: nothing to reuse
    got = cache.generate(model, [b, b], max_new_tokens=4, do_sample=False, eos_token_id=eos)
    assert got == _plain(model, [b, b], 4, pad, eos)
    cut = [b + got[0][:1]]  # an answer kept shorter than sampled: the cache holds more than this context
    assert cache._rows_extended_by(cut + cut) is None
    cache.reset()
    assert cache._rows_extended_by([a]) is None


def test_a_generation_config_is_merged_not_passed_beside_loose_parameters(model_and_tokenizer):
    """The trainer hands its GenerationConfig; transformers deprecates a config plus loose parameters."""
    import warnings

    from transformers import GenerationConfig

    model, tok = model_and_tokenizer
    pad, eos = tok.pad_token_id, [tok.eos_token_id]
    prompt = tok("configured generation", add_special_tokens=False)["input_ids"]
    config = GenerationConfig(do_sample=False, max_new_tokens=9, eos_token_id=eos)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = TurnCache(pad, eos).generate(model, [prompt, prompt], generation_config=config, max_new_tokens=4)
    assert not [w for w in caught if "deprecated" in str(w.message)]
    assert got == _plain(model, [prompt, prompt], 4, pad, eos)  # the explicit max_new_tokens wins over the config's
    assert config.max_new_tokens == 9  # the caller's config is left as it was
