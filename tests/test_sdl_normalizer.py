"""How `SkillSDTrainer._sdl_loss` normalizes L_SDL, for every `loss_type` of TRL 1.16's GRPOTrainer.

Hand-made float64 tensors go through the real method of a real trainer (tiny model, built once per module); the
expected numbers are computed here independently, in plain Python.

What TRL 1.16's `GRPOTrainer._compute_loss` does with its *policy* loss (GA = gradient accumulation steps of the
optimizer step, N = `num_items_in_batch`, the active-token count of the whole generation batch):

- `grpo`, `sapo`: mean over sequences of each sequence's token mean, divided by GA;
- `bnpo`: token mean of the micro-batch, divided by GA;
- `dr_grpo`: token sum / (micro-batch size · max_completion_length), divided by GA;
- `luspo`: mean over sequences of each sequence's token *sum*, divided by GA;
- `dapo` (the default), `cispo`, `vespo`: token sum / (N · GA / steps_per_generation), i.e. the global token mean of
  the accumulation window when steps_per_generation == GA.

The project's choice for L_SDL (docs/method.md, "A separate, unclipped term"): the parent's normalizer for the three
global-token losses; for every other loss type a token mean per micro-batch divided by GA (bnpo's normalization:
L_SDL is "a mean over action tokens", whatever sequence weighting the policy loss uses). That is
`sdl_reduction="token_mean"`, the default.

`sdl_reduction="sequence_sum"` keeps the same numerator and divides by sequences instead of tokens: the micro-batch's
row count times GA, for every loss type (for the global-token losses this *is* the parent's global count of the window,
counted in sequences, since every micro-batch of a generation batch holds the same number of rows).
"""

import math

import pytest
import torch

from _trainer_utils import trainer

GLOBAL_TOKEN_LOSSES = ("dapo", "cispo", "vespo")
PER_MICRO_BATCH_LOSSES = ("grpo", "bnpo", "dr_grpo", "sapo", "luspo")
ALL_LOSSES = GLOBAL_TOKEN_LOSSES + PER_MICRO_BATCH_LOSSES

# Two micro-batches of 2 sequences × 4 positions: 6 active tokens in the first, 3 in the second, so a per-micro-batch
# token mean and the window's global token mean differ. Masked positions carry huge values that must not count.
MASKS = (
    [[1, 1, 1, 1], [1, 1, 0, 0]],
    [[1, 0, 0, 0], [1, 1, 0, 0]],
)
STUDENT = (
    [[-1.0, -2.0, -0.5, -3.0], [-0.7, -1.5, -50.0, -60.0]],
    [[-0.2, -40.0, -45.0, -55.0], [-2.5, -0.9, -70.0, -80.0]],
)
OLD = (
    [[-1.2, -1.8, -0.5, -2.6], [-0.9, -1.1, -1.0, -1.0]],
    [[-0.4, -1.0, -1.0, -1.0], [-2.0, -1.3, -1.0, -1.0]],
)
TEACHER = (
    [[-0.3, -2.9, -1.4, -1.1], [-2.0, -0.2, -1.0, -1.0]],
    [[-1.6, -1.0, -1.0, -1.0], [-0.8, -2.2, -1.0, -1.0]],
)


def _per_token(s, o, t):
    """ρ·(exp(−ℓ) − 1 + ℓ), ℓ = s − t, ρ = exp(s − o): the default estimator, written out by hand."""
    ell = s - t
    return math.exp(s - o) * (math.exp(-ell) - 1.0 + ell)


def _sums_and_counts():
    sums, counts = [], []
    for m, s, o, t in zip(MASKS, STUDENT, OLD, TEACHER):
        values = [_per_token(s[i][j], o[i][j], t[i][j]) for i in range(2) for j in range(4) if m[i][j]]
        sums.append(math.fsum(values))
        counts.append(len(values))
    return sums, counts


def _inputs(k, num_items, scored_rows=(1.0, 1.0)):
    return {
        "completion_mask": torch.tensor(MASKS[k]),
        "teacher_row_mask": torch.tensor(scored_rows),  # rows the teacher scored (a context was present)
        "old_per_token_logps": torch.tensor(OLD[k], dtype=torch.float64),
        "teacher_per_token_logps": torch.tensor(TEACHER[k], dtype=torch.float64),
        # as TRL builds it: gather(loss_mask.sum()).sum(), an integer tensor
        "num_items_in_batch": torch.tensor(num_items),
    }


def _student(k):
    return torch.tensor(STUDENT[k], dtype=torch.float64, requires_grad=True)


@pytest.fixture(scope="module")
def window_trainer(tiny_model_path, tmp_path_factory):
    """GA = 2 and steps_per_generation = 2 (TRL's default): one generation batch is one accumulation window."""
    tr = trainer(tiny_model_path, tmp_path_factory.mktemp("norm"), gradient_accumulation_steps=2,
                 per_device_train_batch_size=2, num_generations=4)
    assert tr.args.gradient_accumulation_steps == 2 and tr.args.steps_per_generation == 2
    assert tr.accelerator.num_processes == 1
    return tr


@pytest.fixture(scope="module")
def spg4_trainer(tiny_model_path, tmp_path_factory):
    """GA = 2 and steps_per_generation = 4: one generation batch feeds two optimizer steps."""
    tr = trainer(tiny_model_path, tmp_path_factory.mktemp("norm-spg4"), gradient_accumulation_steps=2,
                 steps_per_generation=4, per_device_train_batch_size=2, num_generations=4)
    assert tr.args.gradient_accumulation_steps == 2 and tr.args.steps_per_generation == 4
    return tr


def _use(tr, loss_type, training=True, reduction="token_mean"):
    tr.loss_type = loss_type
    tr.args.loss_type = loss_type
    tr.args.sdl_reduction = reduction
    tr.model.train(training)
    tr.current_gradient_accumulation_steps = tr.args.gradient_accumulation_steps


def test_hand_computed_per_token_values_match_the_library():
    # guards the independent expectation below against a typo in the formula
    from skill_sd_trl.method.losses import sdl_per_token

    got = sdl_per_token(torch.tensor(STUDENT[0], dtype=torch.float64), torch.tensor(OLD[0], dtype=torch.float64),
                        torch.tensor(TEACHER[0], dtype=torch.float64))
    assert got[0, 0].item() == pytest.approx(_per_token(STUDENT[0][0][0], OLD[0][0][0], TEACHER[0][0][0]), rel=1e-12)


@pytest.mark.parametrize("loss_type", ALL_LOSSES)
def test_window_sum_of_sdl_contributions_has_the_intended_normalization(window_trainer, loss_type):
    tr = window_trainer
    _use(tr, loss_type)
    sums, counts = _sums_and_counts()
    num_items = sum(counts)  # the generation batch is exactly the accumulation window here
    contributions = [tr._sdl_loss(_student(k), _inputs(k, num_items)) for k in range(2)]
    window = sum(c.item() for c in contributions)
    if loss_type in GLOBAL_TOKEN_LOSSES:
        expected = math.fsum(sums) / num_items  # global token mean of the window (9 tokens)
    else:
        expected = (sums[0] / counts[0] + sums[1] / counts[1]) / 2  # token mean per micro-batch, divided by GA
    assert window == pytest.approx(expected, rel=1e-12)
    # the two normalizations really differ on these tensors, so the assertion above tells them apart
    assert math.fsum(sums) / num_items != pytest.approx((sums[0] / counts[0] + sums[1] / counts[1]) / 2, rel=1e-3)
    # each micro-batch's own contribution, too (not only their sum)
    for k in range(2):
        own = sums[k] / _normalizer(loss_type, num_items, counts[k])
        assert contributions[k].item() == pytest.approx(own, rel=1e-12)


def _normalizer(loss_type, num_items, micro_batch_tokens):
    """What one micro-batch's SDL sum is divided by in a window of 2 (GA = 2): the window's token count for the
    global-token losses, else the micro-batch's own token count times the accumulation steps."""
    return num_items if loss_type in GLOBAL_TOKEN_LOSSES else micro_batch_tokens * 2


@pytest.mark.parametrize("loss_type", ALL_LOSSES)
def test_gradient_of_the_window_is_the_normalized_per_token_gradient(window_trainer, loss_type):
    # d/ds of ρ·k3 with ρ = exp(s − o), ℓ = s − t: ρ·k3 + ρ·(1 − exp(−ℓ)) = ρ·ℓ (the reverse-KL gradient)
    tr = window_trainer
    _use(tr, loss_type)
    _, counts = _sums_and_counts()
    num_items = sum(counts)
    for k in range(2):
        student = _student(k)
        tr._sdl_loss(student, _inputs(k, num_items)).backward()
        norm = _normalizer(loss_type, num_items, counts[k])
        for i in range(2):
            for j in range(4):
                s, o, t = STUDENT[k][i][j], OLD[k][i][j], TEACHER[k][i][j]
                expected = math.exp(s - o) * (s - t) / norm if MASKS[k][i][j] else 0.0
                assert student.grad[i, j].item() == pytest.approx(expected, rel=1e-10, abs=1e-300), (k, i, j)


@pytest.mark.parametrize("loss_type", GLOBAL_TOKEN_LOSSES)
def test_global_token_losses_follow_the_parent_when_a_generation_batch_spans_two_windows(spg4_trainer, loss_type):
    """steps_per_generation = 4, GA = 2: N counts the tokens of 4 micro-batches (2 optimizer steps), and the parent
    divides each micro-batch by N · GA / steps_per_generation = N / 2. Over the whole generation batch the SDL
    contributions therefore add up to 2 × the generation batch's token mean: one global mean per optimizer step."""
    tr = spg4_trainer
    _use(tr, loss_type)
    sums, counts = _sums_and_counts()
    micro = [0, 1, 1, 0]  # four micro-batches: A, B, B, A
    num_items = sum(counts[k] for k in micro)  # 18
    total = sum(tr._sdl_loss(_student(k), _inputs(k, num_items)).item() for k in micro)
    expected = math.fsum(sums[k] for k in micro) / (num_items * 2 / 4)
    assert total == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("loss_type", ALL_LOSSES)
def test_a_row_without_teacher_signal_adds_nothing_but_keeps_its_tokens_in_the_normalizer(window_trainer, loss_type):
    tr = window_trainer
    _use(tr, loss_type)
    sums, counts = _sums_and_counts()
    num_items = sum(counts)
    got = tr._sdl_loss(_student(0), _inputs(0, num_items, scored_rows=(1.0, 0.0))).item()
    row0 = math.fsum(_per_token(STUDENT[0][0][j], OLD[0][0][j], TEACHER[0][0][j]) for j in range(4))
    norm = _normalizer(loss_type, num_items, counts[0])  # row 1's 2 tokens still count
    assert got == pytest.approx(row0 / norm, rel=1e-12)


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
def test_eval_mode_is_neither_split_nor_accumulated(window_trainer, loss_type):
    tr = window_trainer
    _use(tr, loss_type, training=False)
    try:
        sums, counts = _sums_and_counts()
        got = tr._sdl_loss(_student(0), _inputs(0, counts[0])).item()
        assert got == pytest.approx(sums[0] / counts[0], rel=1e-12)  # a plain token mean of the eval batch
    finally:
        tr.model.train()


# ---------------------------------------------------------------------------------------------------------------------
# sdl_reduction="sequence_sum": per-trajectory sums, a mean over trajectories
# ---------------------------------------------------------------------------------------------------------------------
ROWS = 2  # sequences per micro-batch in MASKS


def _row_sums(k):
    """Each sequence's sum of per-token values over its action tokens, micro-batch ``k``."""
    return [math.fsum(_per_token(STUDENT[k][i][j], OLD[k][i][j], TEACHER[k][i][j]) for j in range(4) if MASKS[k][i][j])
            for i in range(ROWS)]


@pytest.mark.parametrize("loss_type", ALL_LOSSES)
def test_sequence_sum_is_the_mean_over_the_windows_sequences_of_their_sums(window_trainer, loss_type):
    tr = window_trainer
    _use(tr, loss_type, reduction="sequence_sum")
    _, counts = _sums_and_counts()
    num_items = sum(counts)
    contributions = [tr._sdl_loss(_student(k), _inputs(k, num_items)).item() for k in range(2)]
    sequences = _row_sums(0) + _row_sums(1)  # the window's 4 trajectories
    assert sum(contributions) == pytest.approx(math.fsum(sequences) / 4, rel=1e-12)
    for k in range(2):  # each micro-batch: its sequences' sums / (rows · GA), whatever the loss type
        assert contributions[k] == pytest.approx(math.fsum(_row_sums(k)) / (ROWS * 2), rel=1e-12)
    # and it differs from the token mean on these unequal lengths (the test can tell them apart)
    _use(tr, loss_type)
    token = sum(tr._sdl_loss(_student(k), _inputs(k, num_items)).item() for k in range(2))
    assert token != pytest.approx(sum(contributions), rel=1e-3)


@pytest.mark.parametrize("loss_type", ALL_LOSSES)
def test_sequence_sum_gradient_is_the_per_token_gradient_over_rows_times_accumulation(window_trainer, loss_type):
    tr = window_trainer
    _use(tr, loss_type, reduction="sequence_sum")
    for k in range(2):
        student = _student(k)
        tr._sdl_loss(student, _inputs(k, 9)).backward()
        for i in range(2):
            for j in range(4):
                s, o, t = STUDENT[k][i][j], OLD[k][i][j], TEACHER[k][i][j]
                expected = math.exp(s - o) * (s - t) / (ROWS * 2) if MASKS[k][i][j] else 0.0
                assert student.grad[i, j].item() == pytest.approx(expected, rel=1e-10, abs=1e-300), (k, i, j)


@pytest.mark.parametrize("loss_type", ALL_LOSSES)
def test_sequence_sum_over_a_generation_batch_spanning_two_windows(spg4_trainer, loss_type):
    """steps_per_generation = 4, GA = 2: every micro-batch divides by rows · GA, so the 4 micro-batches add up to one
    mean over sequences per optimizer step (2 × the mean over the generation batch's 8 sequences)."""
    tr = spg4_trainer
    _use(tr, loss_type, reduction="sequence_sum")
    micro = [0, 1, 1, 0]
    num_items = sum(_sums_and_counts()[1][k] for k in micro)
    total = sum(tr._sdl_loss(_student(k), _inputs(k, num_items)).item() for k in micro)
    sequences = [s for k in micro for s in _row_sums(k)]
    assert total == pytest.approx(2 * math.fsum(sequences) / len(sequences), rel=1e-12)


@pytest.mark.parametrize("loss_type", ALL_LOSSES)
def test_sequence_sum_is_token_mean_times_the_length_when_every_sequence_has_the_same_length(window_trainer,
                                                                                              loss_type):
    tr = window_trainer
    full = {"completion_mask": torch.ones(2, 4, dtype=torch.long)}
    results = {}
    for reduction in ("token_mean", "sequence_sum"):
        _use(tr, loss_type, reduction=reduction)
        results[reduction] = [tr._sdl_loss(_student(k), {**_inputs(k, 16), **full}).item() for k in range(2)]
    for k in range(2):
        assert results["sequence_sum"][k] == pytest.approx(4 * results["token_mean"][k], rel=1e-12)


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
def test_sequence_sum_keeps_a_row_without_teacher_signal_in_the_count_and_is_not_accumulated_in_eval(window_trainer,
                                                                                                    loss_type):
    tr = window_trainer
    _use(tr, loss_type, reduction="sequence_sum")
    got = tr._sdl_loss(_student(0), _inputs(0, 9, scored_rows=(1.0, 0.0))).item()
    assert got == pytest.approx(_row_sums(0)[0] / (ROWS * 2), rel=1e-12)  # row 1 adds 0, still counts as a sequence
    _use(tr, loss_type, training=False, reduction="sequence_sum")
    try:
        assert tr._sdl_loss(_student(0), _inputs(0, 6)).item() == pytest.approx(math.fsum(_row_sums(0)) / ROWS,
                                                                                rel=1e-12)
    finally:
        _use(tr, loss_type)


@pytest.mark.parametrize("processes,steps_per_generation,accumulation", [(1, 2, 2), (2, 4, 2), (4, 1, 3), (2, 2, 8)])
@pytest.mark.parametrize("loss_type", ALL_LOSSES)
def test_the_sequence_normalizer_is_the_parents_global_count_in_sequences(loss_type, processes, steps_per_generation,
                                                                          accumulation):
    """The parent's global-token normalizer, N / processes · GA / steps_per_generation, with N counted in sequences:
    rows · steps_per_generation · processes of them in a generation batch. It comes to rows · GA for every setting."""
    from types import SimpleNamespace

    from skill_sd_trl.trl_private import sdl_normalizer

    fake = SimpleNamespace(loss_type=loss_type, current_gradient_accumulation_steps=accumulation,
                           accelerator=SimpleNamespace(num_processes=processes),
                           args=SimpleNamespace(steps_per_generation=steps_per_generation))
    rows = 3
    global_sequences = rows * steps_per_generation * processes
    expected = global_sequences / processes * accumulation / steps_per_generation
    assert sdl_normalizer(fake, {"num_items_in_batch": torch.tensor(50)}, torch.tensor(7.0), "train", rows) == expected
    assert sdl_normalizer(fake, {}, torch.tensor(7.0), "eval", rows) == rows
