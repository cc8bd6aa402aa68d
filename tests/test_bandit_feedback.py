"""Bandit feedback with several tasks per generation batch: each task's skill is credited with exactly its own
rollouts' rewards (`SkillSDTrainer._after_rewards`, fed by `_calculate_rewards`).

Three tasks share every generation batch (3 prompts × 2 generations, split into 2 micro-batches of 3). The reward
function is under the test's control: it logs the task of every row and returns a distinct reward per row of a
batch, so a reward credited to the wrong task, or in the wrong order, cannot go unnoticed.
"""

import math

import pytest
from datasets import Dataset

from skill_sd_trl import SkillSDTrainer
from skill_sd_trl.skills.bank import SkillBank
from skill_sd_trl.skills.provider import SkillSelection
from skill_sd_trl.skills.schema import Skill

from _trainer_utils import config, lora

TASKS = ["task-a", "task-b", "task-c"]
GENERATIONS = 2


def _dataset():
    return Dataset.from_list([
        {"prompt": [{"role": "user", "content": f"Solve {t}."}], "task_id": t} for t in TASKS
    ])


#: per-task drift with the call number: task-a's later skill looks better, task-b's earlier one, task-c's by position
DRIFT = {"task-a": 100.0, "task-b": -100.0, "task-c": 0.0}


class RowReward:
    """Reward = 10 · row index in the generation batch + DRIFT[task] · call number (distinct within a call);
    logs (task ids, rewards) per call."""

    __name__ = "row_reward"

    def __init__(self, events):
        self.events = events
        self.calls = 0

    def __call__(self, completions, task_id, **kwargs):
        self.calls += 1
        rewards = [10.0 * i + DRIFT[t] * self.calls for i, t in enumerate(task_id)]
        self.events.append(("rewards", list(task_id), rewards))
        return rewards


def _trainer(model_path, out, provider, events, max_steps):
    args = config(out, per_device_train_batch_size=3, gradient_accumulation_steps=2, num_generations=GENERATIONS,
                  max_steps=max_steps)
    assert args.generation_batch_size == len(TASKS) * GENERATIONS  # every generation batch holds all three tasks
    return SkillSDTrainer(model=model_path, reward_funcs=RowReward(events), args=args, train_dataset=_dataset(),
                          peft_config=lora(), skill_provider=provider)


def _own_rewards(event):
    """{task: its rows' rewards, in row order} for one reward call."""
    _, task_ids, rewards = event
    out = {}
    for t, r in zip(task_ids, rewards):
        out.setdefault(t, []).append(r)
    return out


def _batches(events):
    """Split the event log into (reward event, outcome events that followed it) per generation batch."""
    batches = []
    for event in events:
        if event[0] == "rewards":
            batches.append((event, []))
        else:
            batches[-1][1].append(event)
    return batches


def test_each_task_gets_its_own_skill_and_its_own_rewards(tiny_model_path, tmp_path):
    events = []

    class Recorder:
        def select(self, task_id, example):
            events.append(("select", task_id))
            return SkillSelection(skill_id=f"skill-of-{task_id}", text=f"how to solve {task_id}")

        def record_outcome(self, task_id, skill_id, rewards):
            events.append(("outcome", task_id, skill_id, list(rewards)))

    tr = _trainer(tiny_model_path, tmp_path, Recorder(), events, max_steps=2)
    tr.train()

    selects = [e for e in events if e[0] == "select"]
    plain = [e for e in events if e[0] != "select"]
    assert sorted(t for _, t in selects) == sorted(TASKS * 2)  # one selection per task per generation batch
    batches = _batches(plain)
    assert len(batches) == 2
    for reward_event, outcomes in batches:
        _, task_ids, _ = reward_event
        assert sorted(task_ids) == sorted(t for t in TASKS for _ in range(GENERATIONS))
        expected = sorted((t, f"skill-of-{t}", rewards) for t, rewards in _own_rewards(reward_event).items())
        got = sorted((t, s, r) for _, t, s, r in outcomes)
        assert got == expected  # exactly one call per task: its own skill, its own rollouts' rewards, in order
    # the trajectories handed to the summarizer carry the same rewards
    trajectories = tr.pop_finished_trajectories()
    logged = [(t, r) for e, _ in batches for t, r in zip(e[1], e[2])]
    assert [(t.task_id, t.reward) for t in trajectories] == logged


def test_skill_bank_statistics_match_hand_computed_ucb(tiny_model_path, tmp_path):
    bank = SkillBank(ucb_c=1.0)
    for t in TASKS:
        for k in range(2):
            assert bank.add(Skill(f"success {t} {k}", f"mistake {t} {k}", f"workflow {t} {k}", task_id=t))
    ids = {t: [e.skill.skill_id for e in bank.entries(t)] for t in TASKS}
    selected = []  # (task, skill id) in selection order, observed on the real bank
    real_select = bank.select

    def spy(task_id, example=None):
        choice = real_select(task_id, example)
        selected.append((task_id, choice.skill_id))
        return choice

    bank.select = spy
    events = []
    tr = _trainer(tiny_model_path, tmp_path, bank, events, max_steps=3)
    tr.train()

    reward_events = [e for e in events if e[0] == "rewards"]
    assert len(reward_events) == 3
    own = [_own_rewards(e) for e in reward_events]

    # Hand-computed UCB1 (c = 1): step 1 and 2 try the never-selected skills, oldest first; at step 3 both have
    # n = 1 and N = 2, so the exploration bonus sqrt(ln 2 / 1) is equal and the higher mean wins (ties: older).
    expected_choice = {}
    for t in TASKS:
        means = [sum(own[0][t]) / GENERATIONS, sum(own[1][t]) / GENERATIONS]
        third = 1 if means[1] > means[0] else 0
        expected_choice[t] = [ids[t][0], ids[t][1], ids[t][third]]
    for step in range(3):
        assert sorted(selected[3 * step: 3 * step + 3]) == sorted((t, expected_choice[t][step]) for t in TASKS)
    assert expected_choice["task-a"][2] == ids["task-a"][1] and expected_choice["task-b"][2] == ids["task-b"][0]

    scores = bank.ucb_scores(TASKS[0])
    for t in TASKS:
        entries = {e.skill.skill_id: e for e in bank.entries(t)}
        for k, skill_id in enumerate(ids[t]):
            steps = [s for s in range(3) if expected_choice[t][s] == skill_id]
            rewards = [r for s in steps for r in own[s][t]]
            e = entries[skill_id]
            assert e.selections == len(steps), (t, skill_id)
            assert e.outcomes == len(steps)
            assert e.reward_count == GENERATIONS * len(steps)
            assert e.reward_sum == math.fsum(rewards)
            assert e.mean_reward == math.fsum(rewards) / len(rewards)
        # the score the bank would use next: mean + sqrt(ln N / n)
        if t == TASKS[0]:
            for skill_id, e in entries.items():
                assert scores[skill_id] == e.mean_reward + math.sqrt(math.log(3) / e.selections)
    stats = bank.stats()
    assert stats["selections"] == 9 and stats["outcomes"] == 9
    assert stats["unknown_outcomes"] == 0 and stats["nonfinite_rewards"] == 0


def test_scenario_bank_shares_skills_and_statistics_between_sibling_tasks(tiny_model_path, tmp_path):
    """task-a and task-b form one scenario, task-c its own. Only task-a and task-c have skills (written about them);
    task-b is conditioned on task-a's from the first step, and the UCB statistics of scenario "ab" are those of both
    tasks' rollouts: replayed here by hand from the observed selection order and the rewards each task's rows got."""
    scenarios = {"task-a": "ab", "task-b": "ab", "task-c": "c"}
    bank = SkillBank(ucb_c=1.0, scope="scenario", key=scenarios.__getitem__)
    for t in ("task-a", "task-c"):
        for k in range(2):
            assert bank.add(Skill(f"success {t} {k}", f"mistake {t} {k}", f"workflow {t} {k}", task_id=t))
    ids = {s: [e.skill.skill_id for e in bank.entries(bank_key=s)] for s in ("ab", "c")}
    assert ids == {"ab": ["task-a#0", "task-a#1"], "c": ["task-c#2", "task-c#3"]}
    selected = []
    real_select = bank.select

    def spy(task_id, example=None):
        choice = real_select(task_id, example)
        selected.append((task_id, choice.skill_id if choice else None))
        return choice

    bank.select = spy
    events = []
    tr = _trainer(tiny_model_path, tmp_path, bank, events, max_steps=3)
    tr.train()

    own = [_own_rewards(e) for e in events if e[0] == "rewards"]
    assert len(own) == 3 and len(selected) == 9
    assert all(skill is not None for _, skill in selected)  # task-b included, from step 1
    # Hand UCB1 per scenario: untried skills first (oldest first), else mean + sqrt(ln N / n), ties to the older;
    # a batch's selections come before its rewards, so two siblings in one batch see each other's selection.
    stats = {s: {i: [0, 0.0, 0] for i in ids[s]} for s in ids}  # skill -> [n, reward sum, reward count]
    for step in range(3):
        batch = selected[3 * step: 3 * step + 3]
        assert sorted(t for t, _ in batch) == sorted(TASKS)
        for task, skill in batch:
            per = stats[scenarios[task]]
            total = sum(v[0] for v in per.values())

            def score(i, per=per, total=total):
                n, rsum, rcount = per[i]
                return math.inf if n == 0 else (rsum / rcount if rcount else 0.0) + math.sqrt(math.log(total) / n)

            assert skill == max(per, key=score), (step, task)
            per[skill][0] += 1
        for task, skill in batch:
            per = stats[scenarios[task]][skill]
            per[1] += math.fsum(own[step][task])
            per[2] += len(own[step][task])
    for s in ids:
        for e in bank.entries(bank_key=s):
            n, rsum, rcount = stats[s][e.skill.skill_id]
            assert (e.selections, e.reward_count) == (n, rcount) and e.reward_sum == pytest.approx(rsum, abs=1e-9)
    assert sum(stats["ab"][i][0] for i in ids["ab"]) == 6 and sum(stats["c"][i][0] for i in ids["c"]) == 3
    assert bank.stats()["cross_task_selections"] == 3  # task-b, every step
