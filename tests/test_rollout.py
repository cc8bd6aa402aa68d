"""Multi-turn rollouts on Sokoban: masks, positions and teacher/student alignment across turns.

A scripted policy replaces only the sampling backend (`_generate_single_turn`), so every token is known; the real
backend is exercised by the 2-step training run at the end.
"""

import math

import pytest
import torch

from skill_sd_trl import SkillSDTrainer
from skill_sd_trl.envs.sokoban import SokobanEnv, make_sokoban_dataset
from skill_sd_trl.rewards import env_reward
from skill_sd_trl.rollout.multi_turn import ChatObservations, MultiTurnRollout, RolloutLimits

from _trainer_utils import config, lora


def _trainer(model_path, tmp_path, dataset, limits=None, **overrides):
    overrides.setdefault("max_completion_length", 256)
    return SkillSDTrainer(
        model=model_path,
        reward_funcs=env_reward,
        args=config(tmp_path, **overrides),
        train_dataset=dataset,
        peft_config=lora(),
        # kv_cache off: the scripted policy replaces TRL's single-turn sampler, which the cached path does not call
        rollout_func=MultiTurnRollout(lambda: SokobanEnv(), limits or RolloutLimits(max_turns=12, max_new_tokens_per_turn=24),
                                      kv_cache=False),
    )


def _rows(tr, n_groups=1):
    ds = tr.train_dataset
    return [dict(ds[i]) for i in range(n_groups) for _ in range(tr.num_generations)]


def scripted_batch(tr):
    """One training generation batch of the trainer's first rows, played by :class:`ScriptedPolicy`."""
    rows = _rows(tr)
    tr._generate_single_turn = ScriptedPolicy(tr, rows)
    tr.model.train()
    tr.current_gradient_accumulation_steps = 1
    return tr._generate_and_score_completions(rows)


class ScriptedPolicy:
    """Plays the level's optimal solution one move per turn (or a fixed text), recording every context it sees."""

    def __init__(self, tr, rows, fixed=None):
        self.tok = tr.processing_class
        self.eos = tr.processing_class.eos_token_id
        self.moves = [r["ground_truth"].split(" || ") for r in rows]
        self.fixed = fixed
        self.contexts = []
        self.turn = 0
        self.emitted = []

    def __call__(self, contexts, images, fields, num_generations=1):
        self.contexts.append([list(c) for c in contexts])
        out = []
        for i, _ in enumerate(contexts):
            text = self.fixed or f"<answer>{self.moves[i][min(self.turn, len(self.moves[i]) - 1)]}</answer>"
            ids = self.tok(text, add_special_tokens=False)["input_ids"] + [self.eos]
            out.append(ids)
        self.emitted.append(out)
        self.turn += 1
        return out, None


def test_scripted_episode_masks_positions_and_teacher_alignment(tiny_model_path, tmp_path):
    ds = make_sokoban_dataset("small", "train", seed=0).filter(lambda r: r["solution_length"] >= 3)
    ds = ds.add_column("skill", ["golden_workflow: " + g for g in ds["ground_truth"]])
    tr = _trainer(tiny_model_path, tmp_path, ds, per_device_train_batch_size=2, num_generations=2,
                  max_completion_length=4096)
    rows = _rows(tr)
    policy = ScriptedPolicy(tr, rows)
    tr._generate_single_turn = policy
    tr.model.train()
    batch = tr._generate_and_score_completions(rows)

    n_moves = len(policy.moves[0])
    assert len(policy.emitted) == n_moves  # one turn per move, then solved
    ids, mask = batch["completion_ids"][0], batch["completion_mask"][0]
    env_mask = batch["tool_mask"][0]
    # model tokens are exactly the scripted turns, in order; everything between is environment text
    model_tokens = ids[(env_mask * mask).bool()].tolist()
    assert model_tokens == [t for turn in policy.emitted for t in turn[0]]
    env_tokens = ids[((1 - env_mask) * mask).bool()].tolist()
    env_text = tr.processing_class.decode(env_tokens)
    assert env_text.count("<|im_start|>user") == n_moves - 1  # no observation after the solving move
    assert "Here is the board" in env_text or "#" in env_text
    # each turn's context = prompt + the completion so far (never re-tokenized)
    prompt_ids = batch["prompt_ids"][0][batch["prompt_mask"][0].bool()].tolist()
    full = prompt_ids + ids[mask.bool()].tolist()
    for turn, ctx in enumerate(policy.contexts):
        assert full[: len(ctx[0])] == ctx[0], turn
    # episode record and metrics
    episode = rows[0]["episode"]
    assert episode["success"] and episode["stop_reason"] == "solved" and len(episode["turns"]) == n_moves
    assert tr._metrics["train"]["env/sokoban/acc"][-1] == 1.0
    assert tr._metrics["train"]["env/sokoban/stop/solved"][-1] == 1.0
    expected_reward = -0.1 * n_moves + 1.0 + 10.0
    assert math.isclose(episode["reward"], expected_reward, abs_tol=1e-6)
    # teacher: its prompt (with the skill) + the identical completion ids, scored at the same positions
    tprompt = tr._tokenize_prompts([tr._render(rows[0]["prompt"], rows[0]["skill"])])[0][0]
    assert len(tprompt) > len(prompt_ids)
    n = int(mask.sum())
    seq = torch.tensor([tprompt + ids[:n].tolist()])
    with torch.no_grad(), tr.teacher.activated() as model:
        logits = model(input_ids=seq).logits[0].float()
    manual = torch.log_softmax(logits[:-1], -1).gather(1, seq[0, 1:, None])[:, 0][-n:]
    teacher = batch["teacher_per_token_logps"][0][:n]
    model_pos = env_mask[:n].bool()
    assert torch.allclose(teacher[model_pos], manual[model_pos], atol=1e-4)
    assert (teacher[~model_pos] == 0).all()  # environment tokens carry no teacher signal


def test_environment_tokens_never_enter_the_losses(tiny_model_path, tmp_path):
    ds = make_sokoban_dataset("small", "train", seed=0).filter(lambda r: r["solution_length"] >= 3)
    ds = ds.add_column("skill", ["golden_workflow: " + g for g in ds["ground_truth"]])  # a teacher signal
    tr = _trainer(tiny_model_path, tmp_path, ds, per_device_train_batch_size=2, num_generations=2,
                  max_completion_length=4096)
    batch = scripted_batch(tr)
    env_positions = (batch["tool_mask"] == 0) & (batch["completion_mask"] == 1)
    model_positions = (batch["tool_mask"] == 1) & (batch["completion_mask"] == 1)
    assert env_positions.any()
    base = tr.compute_loss(tr.model, batch).item()
    poisoned = dict(batch)
    poisoned["teacher_per_token_logps"] = batch["teacher_per_token_logps"].masked_fill(env_positions, -50.0)
    assert tr.compute_loss(tr.model, poisoned).item() == pytest.approx(base, abs=1e-7)
    # the same poison on the model's own tokens does move the loss: the check above can fail
    poisoned["teacher_per_token_logps"] = batch["teacher_per_token_logps"].masked_fill(model_positions, -50.0)
    assert tr.compute_loss(tr.model, poisoned).item() != pytest.approx(base, abs=1e-7)


def test_garbage_output_ends_with_invalid_output_and_penalties(tiny_model_path, tmp_path):
    ds = make_sokoban_dataset("small", "train", seed=0)
    tr = _trainer(tiny_model_path, tmp_path, ds, limits=RolloutLimits(max_turns=10, max_consecutive_invalid=3),
                  per_device_train_batch_size=2, num_generations=2, max_completion_length=2048)
    rows = _rows(tr)
    tr._generate_single_turn = ScriptedPolicy(tr, rows, fixed="!!!!!! no moves here")
    tr.model.train()
    tr._generate_and_score_completions(rows)
    episode = rows[0]["episode"]
    assert episode["stop_reason"] == "invalid_output" and len(episode["turns"]) == 3
    assert all(not t["valid"] for t in episode["turns"])
    assert "invalid_action" in episode["turns"][0]["info"]["events"]
    assert tr._metrics["train"]["env/sokoban/stop/invalid_output"][-1] == 1.0
    assert tr._metrics["train"]["env/sokoban/invalid_actions"][-1] == 3.0


def test_context_budget_stops_with_context_full(tiny_model_path, tmp_path):
    ds = make_sokoban_dataset("small", "train", seed=0).filter(lambda r: r["solution_length"] >= 3)
    tr = _trainer(tiny_model_path, tmp_path, ds, max_completion_length=60, per_device_train_batch_size=2,
                  num_generations=2)
    rows = _rows(tr)
    tr._generate_single_turn = ScriptedPolicy(tr, rows)
    tr.model.train()
    batch = tr._generate_and_score_completions(rows)
    assert rows[0]["episode"]["stop_reason"] == "context_full"
    assert int(batch["completion_mask"][0].sum()) <= 60


def test_max_turns_stop_reason(tiny_model_path, tmp_path):
    ds = make_sokoban_dataset("small", "train", seed=0).filter(lambda r: r["solution_length"] >= 3)
    tr = _trainer(tiny_model_path, tmp_path, ds, limits=RolloutLimits(max_turns=2), per_device_train_batch_size=2,
                  num_generations=2, max_completion_length=2048)
    rows = _rows(tr)
    tr._generate_single_turn = ScriptedPolicy(tr, rows)
    tr.model.train()
    tr._generate_and_score_completions(rows)
    assert rows[0]["episode"]["stop_reason"] == "max_turns" and len(rows[0]["episode"]["turns"]) == 2


def test_observation_ids_render_a_user_turn_and_close_truncated_turns(tiny_model_path, tmp_path):
    ds = make_sokoban_dataset("tiny", "train", seed=0)
    tr = _trainer(tiny_model_path, tmp_path, ds)
    render = ChatObservations(tr.processing_class, tr.chat_template)
    closed = render("board here", turn_closed=True)
    text = tr.processing_class.decode(closed)
    assert text.startswith("\n<|im_start|>user\nboard here<|im_end|>") and text.endswith("<|im_start|>assistant\n")
    opened = render("board here", turn_closed=False)
    assert opened[0] == tr.processing_class.eos_token_id and opened[1:] == closed


def test_rollout_needs_batch_rows_and_valid_limits():
    with pytest.raises(ValueError, match="max_turns"):
        RolloutLimits(max_turns=0)

    rollout = MultiTurnRollout(SokobanEnv)
    with pytest.raises(RuntimeError, match="needs the dataset row of every prompt.*rollout.bind"):
        rollout([[{"role": "user", "content": "x"}]], object())  # TRL's bare call: no rows
    with pytest.raises(RuntimeError, match="bound to 2 rows but got 1 prompts"):
        rollout.bind([{}, {}])([[{"role": "user", "content": "x"}]], object())


def test_real_two_step_skill_sd_training_on_sokoban(tiny_model_path, tmp_path):
    ds = make_sokoban_dataset("tiny", "train", seed=0)
    ds = ds.add_column("skill", ["golden_workflow: " + g for g in ds["ground_truth"]])
    tr = _trainer(tiny_model_path, tmp_path, ds, limits=RolloutLimits(max_turns=3, max_new_tokens_per_turn=8),
                  max_completion_length=64)
    before = {n: p.detach().clone() for n, p in tr.model.named_parameters() if ".default." in n}
    tr.train()
    logs = [h for h in tr.state.log_history if "env/sokoban/acc" in h]
    assert len(logs) == 2
    for key in ("reward", "env/sokoban/acc", "env/sokoban/comp", "self_distillation/sdl", "env/sokoban/turns"):
        assert math.isfinite(logs[-1][key]), key
    assert sum(v for k, v in logs[-1].items() if k.startswith("env/sokoban/stop/")) == pytest.approx(1.0)
    after = {n: p.detach() for n, p in tr.model.named_parameters() if ".default." in n}
    assert any(not torch.equal(before[n], after[n]) for n in before)
    assert len(tr.pop_finished_trajectories()) == 8
