"""SkillSummarizerCallback: non-blocking background summarization, overflow policy, metrics, checkpoints, and
bank consistency across 2 processes (torchrun, gloo)."""

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from skill_sd_trl.skills.bank import SkillBank
from skill_sd_trl.skills.callback import SkillSummarizerCallback
from skill_sd_trl.skills.schema import Skill
from skill_sd_trl.skills.summarizers import ExperienceSummarizer, Summarizer, SummarizerError
from skill_sd_trl.skills.trajectory import Trajectory, Turn

REPO = Path(__file__).resolve().parents[1]
SKILL_JSON = json.dumps({"success_analysis": "s", "mistake_analysis": "m", "golden_workflow": "g"})


class FakeTrainer:
    """Test double: the trainer's side of the protocol (no accelerator: single process)."""

    def __init__(self):
        self.pending = []
        self.state = SimpleNamespace(global_step=0)

    def pop_finished_trajectories(self):
        out, self.pending = self.pending, []
        return out


def traj(task_id, reward=1.0, success=True, actions=("Up", "Left"), step=0):
    turns = [Turn(action=a, observation="ok", info={"actions": [a], "events": []}) for a in actions]
    return Trajectory(task_id=task_id, env_name="sokoban", task=f"level {task_id}", turns=turns, reward=reward,
                      success=success, completion=1.0 if success else 0.0, step=step)


class SlowSummarizer(Summarizer):
    name = "slow"

    def __init__(self, delay):
        self.delay = delay
        self.inner = ExperienceSummarizer()

    def summarize(self, trajectories):
        time.sleep(self.delay)
        return self.inner.summarize(trajectories)


class GateSummarizer(Summarizer):
    """Blocks until released; records the task ids it was given, in order."""

    name = "gate"

    def __init__(self):
        self.started = threading.Event()
        self.release = threading.Event()
        self.seen = []

    def summarize(self, trajectories):
        self.seen.append(trajectories[0].task_id)
        self.started.set()
        assert self.release.wait(10)
        return json.dumps({"success_analysis": f"s {trajectories[0].task_id}", "mistake_analysis": "m",
                           "golden_workflow": "g"})


class ScriptedSummarizer(Summarizer):
    """Returns/raises the scripted items in order."""

    name = "scripted"

    def __init__(self, items):
        self.items = list(items)
        self.calls = 0

    def summarize(self, trajectories):
        self.calls += 1
        item = self.items.pop(0)
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, tuple):  # ("sleep", seconds)
            time.sleep(item[1])
            return SKILL_JSON
        return item


def step(cb, trainer, trajectories, global_step=1):
    trainer.pending = list(trajectories)
    trainer.state.global_step = global_step
    start = time.perf_counter()
    cb.on_step_end(None, trainer.state, None)
    return time.perf_counter() - start


def test_slow_summarizer_does_not_block_step_end():
    trainer, bank = FakeTrainer(), SkillBank()
    cb = SkillSummarizerCallback(trainer, SlowSummarizer(0.4), bank, skill_granularity="group")
    elapsed = step(cb, trainer, [traj("a"), traj("b", reward=3.0), traj("a", reward=2.0)], global_step=5)
    assert elapsed < 0.1
    m = cb.metrics()
    assert m["skills/queued"] == 2 and m["skills/submitted"] == 2 and m["skills/added"] == 0
    assert len(bank) == 0
    assert cb.flush(10)
    m = cb.metrics()
    assert (m["skills/queued"], m["skills/added"], m["skills/bank_size"], m["skills/tasks_with_skills"]) == (0, 2, 2, 2)
    assert 0.35 < m["skills/latency"] < 2.0
    (skill_a,) = bank.skills("a")
    assert (skill_a.task_id, skill_a.reward, skill_a.step, skill_a.summarizer) == ("a", 2.0, 5, "slow")
    assert skill_a.skill_id == "a#0" or skill_a.skill_id == "a#1"
    cb.close()


class FocusRecorder(Summarizer):
    """New interface: records (focus, group) per call; the skill names the focus so tests can tell which one."""

    name = "focus-recorder"

    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()

    def summarize(self, trajectories, focus=None):
        with self.lock:
            self.calls.append((focus, list(trajectories)))
        about = "group" if focus is None else focus.info["id"]
        return json.dumps({"success_analysis": f"about {about}", "mistake_analysis": "m", "golden_workflow": "g"})


class LegacyRecorder(Summarizer):
    """Old interface, ``summarize(trajectories)`` only."""

    name = "legacy"

    def __init__(self):
        self.calls = []

    def summarize(self, trajectories):
        self.calls.append([t.info["id"] for t in trajectories])
        return json.dumps({"success_analysis": "+".join(t.info["id"] for t in trajectories), "mistake_analysis": "m",
                           "golden_workflow": "g"})


def batch(tasks=("a", "b"), rewards=(0.5, 3.0, -1.0), step=0):
    out = []
    for task in tasks:
        for k, r in enumerate(rewards):
            t = traj(task, reward=r, success=r > 0, step=step)
            t.info["id"] = f"{task}{k}"
            out.append(t)
    return out


def test_trajectory_mode_one_job_and_one_skill_per_trajectory():
    trainer, bank, summ = FakeTrainer(), SkillBank(), FocusRecorder()
    cb = SkillSummarizerCallback(trainer, summ, bank)  # the default granularity
    assert cb.skill_granularity == "trajectory"
    trajectories = batch()
    assert cb.submit(trajectories, step=7) == 6
    assert cb.flush(10)
    m = cb.metrics()
    assert (m["skills/submitted"], m["skills/added"], m["skills/bank_size"]) == (6, 6, 6)
    assert len(summ.calls) == 6
    for focus, group in summ.calls:  # each call: one focus, its own task's whole group as contrast
        assert focus is not None
        assert [t.info["id"] for t in group] == [f"{focus.task_id}{k}" for k in range(3)]
    by_id = {t.info["id"]: t for t in trajectories}
    for task in "ab":
        skills = bank.skills(task)
        assert sorted(s.success_analysis for s in skills) == [f"about {task}{k}" for k in range(3)]
        for skill in skills:  # the stored reward is the described trajectory's, not the group's best
            assert skill.reward == by_id[skill.success_analysis.split()[-1]].reward
            assert skill.step == 7
    assert sorted(s.reward for s in bank.skills("a")) == [-1.0, 0.5, 3.0]
    cb.close()


def test_group_mode_keeps_one_job_per_task_with_the_best_reward():
    trainer, bank, summ = FakeTrainer(), SkillBank(), FocusRecorder()
    cb = SkillSummarizerCallback(trainer, summ, bank, skill_granularity="group")
    assert cb.submit(batch(), step=2) == 2
    assert cb.flush(10)
    assert [focus for focus, _ in summ.calls] == [None, None]
    assert sorted(len(group) for _, group in summ.calls) == [3, 3]
    assert cb.metrics()["skills/submitted"] == 2
    for task in "ab":
        (skill,) = bank.skills(task)
        assert (skill.success_analysis, skill.reward) == ("about group", 3.0)
    cb.close()


def test_trajectory_mode_with_a_summarizer_of_the_old_interface_gets_the_focus_alone():
    trainer, bank, summ = FakeTrainer(), SkillBank(), LegacyRecorder()
    cb = SkillSummarizerCallback(trainer, summ, bank)
    step(cb, trainer, batch(tasks=("a",)))
    assert cb.flush(10)
    assert summ.calls == [["a0"], ["a1"], ["a2"]]
    assert sorted((s.success_analysis, s.reward) for s in bank.skills("a")) == [("a0", 0.5), ("a1", 3.0), ("a2", -1.0)]
    cb.close()


def test_trajectory_mode_caps_the_contrast_not_the_jobs():
    trainer, bank, summ = FakeTrainer(), SkillBank(capacity_per_task=16), FocusRecorder()
    cb = SkillSummarizerCallback(trainer, summ, bank, max_trajectories_per_task=2)
    cb.submit(batch(tasks=("a",), rewards=(1.0, 2.0, 3.0, 4.0, 5.0)))
    assert cb.flush(10)
    assert len(summ.calls) == 5  # every trajectory has its job
    assert all([t.reward for t in group] == [5.0, 1.0] for _, group in summ.calls)  # best and worst as contrast
    cb.close()


def test_queue_default_scales_with_granularity_and_counts_jobs():
    assert SkillSummarizerCallback(FakeTrainer(), ExperienceSummarizer(), SkillBank()).max_queue == 512
    assert SkillSummarizerCallback(FakeTrainer(), ExperienceSummarizer(), SkillBank(),
                                   skill_granularity="group").max_queue == 64
    trainer, summ = FakeTrainer(), GateSummarizer()
    cb = SkillSummarizerCallback(trainer, summ, SkillBank(), max_queue=4)
    step(cb, trainer, [traj("A")])
    assert summ.started.wait(5)
    step(cb, trainer, batch(tasks=("b", "c"), rewards=(1.0, 2.0, 3.0)))  # 6 trajectory jobs for 4 places
    m = cb.metrics()
    assert (m["skills/submitted"], m["skills/dropped"], m["skills/queued"]) == (7, 2, 5)
    summ.release.set()
    assert cb.flush(10)
    assert summ.seen == ["A", "b", "c", "c", "c"]  # the two oldest jobs (b0, b1) were dropped
    cb.close()


def test_sync_counts_a_selection_split_across_two_ranks_once(monkeypatch):
    """Rank 0's view of one synchronisation: the task's group was split 2 + 2 across the ranks, both selected the
    same skill (same bank, deterministic UCB) and reported their own rewards."""
    import torch.distributed as dist

    bank = SkillBank()
    bank.add(Skill("s", "m", "g", task_id="t"))
    replica = SkillBank.from_dict(bank.to_dict())
    skill_id = bank.select("t").skill_id
    bank.record_outcome("t", skill_id, [1.0, 2.0])
    assert replica.select("t").skill_id == skill_id
    replica.record_outcome("t", skill_id, [3.0, 4.0])
    rank1 = ([traj("t", reward=3.0), traj("t", reward=4.0)], replica.drain_deltas())

    def all_gather_object(out, obj):
        out[0], out[1] = obj, rank1

    monkeypatch.setattr(dist, "all_gather_object", all_gather_object)
    monkeypatch.setattr(dist, "broadcast_object_list", lambda objects, src=0: None)
    cb = SkillSummarizerCallback(FakeTrainer(), ExperienceSummarizer(), bank)
    cb._layout = (2, 0)
    gathered = cb.sync([traj("t", reward=1.0), traj("t", reward=2.0)])
    assert [t.reward for t in gathered] == [1.0, 2.0, 3.0, 4.0]
    (entry,) = bank.entries("t")
    assert (entry.selections, entry.outcomes, entry.reward_count, entry.reward_sum) == (1, 1, 4, 10.0)
    assert (bank.stats()["selections"], bank.stats()["outcomes"]) == (1, 1)
    assert bank.ucb_scores("t")[skill_id] == pytest.approx(2.5)  # mean 2.5 + c·sqrt(ln 1 / 1) = 2.5
    cb.close()


def test_recipe_field_reaches_the_callback(tiny_model_path, tmp_path):
    from trl import ModelConfig

    from skill_sd_trl import SkillSDConfig
    from skill_sd_trl.app.script_args import SkillSDScriptArguments
    from skill_sd_trl.app.train import build_trainer

    assert SkillSDScriptArguments().skill_granularity == "trajectory"
    with pytest.raises(ValueError, match="skill_granularity='episode' is not valid"):
        SkillSDScriptArguments(skill_granularity="episode")
    with pytest.raises(ValueError, match="skill_granularity='episode' is not supported"):
        SkillSummarizerCallback(FakeTrainer(), ExperienceSummarizer(), SkillBank(), skill_granularity="episode")
    args = SkillSDConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[],
                         per_device_train_batch_size=4, num_generations=4, max_completion_length=16)
    for granularity in ("group", "trajectory"):
        script = SkillSDScriptArguments(env_args={"preset": "tiny"}, max_train_samples=1, skill_granularity=granularity)
        trainer = build_trainer(script, args, ModelConfig(model_name_or_path=tiny_model_path))
        (cb,) = [c for c in trainer.callback_handler.callbacks if isinstance(c, SkillSummarizerCallback)]
        assert (cb.skill_granularity, cb.max_queue) == (granularity, {"group": 64, "trajectory": 512}[granularity])


def test_queue_overflow_drops_oldest():
    trainer, bank = FakeTrainer(), SkillBank()
    summ = GateSummarizer()
    cb = SkillSummarizerCallback(trainer, summ, bank, max_queue=2)
    step(cb, trainer, [traj("A")])
    assert summ.started.wait(5)  # A is in the worker, the queue is empty
    for name in "BCDE":
        assert step(cb, trainer, [traj(name)]) < 0.1
    m = cb.metrics()
    assert m["skills/dropped"] == 2 and m["skills/queued"] == 3  # 1 running + 2 waiting
    summ.release.set()
    assert cb.flush(10)
    assert summ.seen == ["A", "D", "E"]  # B and C (the oldest waiting) were dropped
    assert sorted(bank.tasks()) == ["A", "D", "E"]
    assert cb.metrics()["skills/added"] == 3
    cb.close()


def test_failures_are_counted_not_stored():
    trainer, bank = FakeTrainer(), SkillBank()
    items = [
        "I cannot produce JSON today.",  # parse failure
        '{"success_analysis": "s", "mistake_analysis": "m"}',  # parse failure: missing key
        SummarizerError("HTTP 503", retryable=True), SKILL_JSON,  # retried, then added
        SKILL_JSON,  # duplicate of the previous one for the same task
        SummarizerError("HTTP 401 bad key", retryable=False),  # error, not retried
        RuntimeError("backend bug"),  # error, not retried
    ]
    summ = ScriptedSummarizer(items)
    cb = SkillSummarizerCallback(trainer, summ, bank, retries=1, retry_backoff=0.0)
    for _ in range(6):
        step(cb, trainer, [traj("t")])
        assert cb.flush(5)
    m = cb.metrics()
    assert (m["skills/parse_failures"], m["skills/added"], m["skills/duplicates"], m["skills/errors"],
            m["skills/retries"]) == (2, 1, 1, 2, 1)
    assert summ.calls == 7 and len(bank) == 1
    reasons = dict(cb.failure_reasons)
    assert reasons["no JSON object found in the output"] == 1
    assert "HTTP 401 bad key" in reasons and "RuntimeError: backend bug" in reasons
    cb.close()


def test_call_timeout_abandons_the_call():
    trainer, bank = FakeTrainer(), SkillBank()
    summ = ScriptedSummarizer([("sleep", 3.0), SKILL_JSON])
    cb = SkillSummarizerCallback(trainer, summ, bank, call_timeout=0.3, retries=1, retry_backoff=0.0)
    start = time.perf_counter()
    step(cb, trainer, [traj("t")])
    assert cb.flush(5)
    assert time.perf_counter() - start < 2.0  # did not wait for the 3 s call
    m = cb.metrics()
    assert (m["skills/timeouts"], m["skills/retries"], m["skills/added"], m["skills/errors"]) == (1, 1, 1, 0)
    cb.close()


def test_tiny_local_model_garbage_counted_as_parse_failure():
    from skill_sd_trl.skills.llm_summarizers import TransformersSummarizer
    from skill_sd_trl.models.tiny import build_tiny_model, build_tokenizer

    tok = build_tokenizer()
    summ = TransformersSummarizer(build_tiny_model(tok), tok, max_new_tokens=16, max_prompt_chars=800)
    trainer, bank = FakeTrainer(), SkillBank()
    cb = SkillSummarizerCallback(trainer, summ, bank)
    step(cb, trainer, [traj("t"), traj("u")])
    assert cb.flush(60)
    m = cb.metrics()
    assert (m["skills/parse_failures"], m["skills/added"], m["skills/errors"], m["skills/bank_size"]) == (2, 0, 0, 0)
    cb.close()


def test_a_trainer_that_takes_the_pipeline_saves_restores_and_logs_it_at_named_points(tmp_path):
    class PipelineTrainer(FakeTrainer):
        pipeline = None

        def attach_skill_pipeline(self, pipeline):
            self.pipeline = pipeline

    trainer, bank = PipelineTrainer(), SkillBank()
    cb = SkillSummarizerCallback(trainer, ExperienceSummarizer(), bank, wait_for_skills=5)
    assert trainer.pipeline is cb  # the trainer calls it; it does not walk its callbacks
    step(cb, trainer, [traj("a")])
    logs = {"loss": 1.0}
    cb.on_log(None, trainer.state, None, logs=logs)
    assert logs == {"loss": 1.0}  # the trainer adds the metrics to its row itself: once
    plain = SkillSummarizerCallback(FakeTrainer(), ExperienceSummarizer(), SkillBank())
    plain.on_log(None, trainer.state, None, logs=logs)
    assert "skills/bank_size" in logs  # any other trainer: the callback logs them
    cb.close()
    plain.close()


def test_the_pipeline_runs_without_the_trainer_callback_machinery():
    from skill_sd_trl.skills.pipeline import SkillPipeline

    trainer, bank = FakeTrainer(), SkillBank()
    pipeline = SkillPipeline(trainer, ExperienceSummarizer(), bank, wait_for_skills=5)
    trainer.pending = [traj("a"), traj("b", reward=0.0, success=False)]
    pipeline.after_step(3)  # what the callback's on_step_end calls
    assert sorted(bank.tasks()) == ["a", "b"] and pipeline.metrics()["skills/added"] == 2
    assert {s.step for t in bank.tasks() for s in bank.skills(t)} == {3}
    pipeline.finish()  # what on_train_end calls: drained, worker stopped
    assert pipeline._executor is None


def test_on_log_train_end_and_reopen():
    trainer, bank = FakeTrainer(), SkillBank()
    cb = SkillSummarizerCallback(trainer, SlowSummarizer(0.2), bank)
    step(cb, trainer, [traj("a")])
    logs = {"loss": 1.0}
    cb.on_log(None, trainer.state, None, logs=logs)
    assert logs["loss"] == 1.0 and {"skills/queued", "skills/added", "skills/duplicates", "skills/parse_failures",
                                    "skills/dropped", "skills/errors", "skills/latency", "skills/bank_size",
                                    "skills/tasks_with_skills"} <= set(logs)
    cb.on_train_end(None, trainer.state, None)  # flushes, then stops the worker
    assert len(bank) == 1 and cb._executor is None  # flushed, then the worker was shut down
    step(cb, trainer, [traj("b")])  # a second train() reopens
    assert cb.flush(5) and len(bank) == 2
    cb.close()


def test_checkpoint_round_trip(tmp_path):
    trainer, bank = FakeTrainer(), SkillBank(capacity_per_task=3)
    summ = ExperienceSummarizer()
    cb = SkillSummarizerCallback(trainer, summ, bank)
    step(cb, trainer, [traj("a"), traj("b", actions=("Down",))])
    assert cb.flush(5)
    bank.record_outcome("a", bank.select("a").skill_id, [0.5, 1.5])
    folder = tmp_path / "checkpoint-10"
    folder.mkdir()
    cb.save_to_checkpoint(str(folder))
    assert sorted(os.listdir(folder)) == ["skill_bank.json", "skill_summarizer.json"]

    bank2, summ2 = SkillBank(), ExperienceSummarizer()
    cb2 = SkillSummarizerCallback(FakeTrainer(), summ2, bank2)
    assert cb2.load_from_checkpoint(str(folder))
    assert bank2 == bank and bank2.capacity_per_task == 3
    assert summ2.state_dict() == summ.state_dict()
    assert not cb2.load_from_checkpoint(str(tmp_path / "nothing-here"))
    cb.close()
    cb2.close()


def test_constructor_validation():
    with pytest.raises(TypeError, match="pop_finished_trajectories"):
        SkillSummarizerCallback(object(), ExperienceSummarizer(), SkillBank())
    with pytest.raises(TypeError, match="summarize"):
        SkillSummarizerCallback(FakeTrainer(), object(), SkillBank())
    with pytest.raises(ValueError, match="max_queue >= 1"):
        SkillSummarizerCallback(FakeTrainer(), ExperienceSummarizer(), SkillBank(), max_queue=0)


DIST_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from types import SimpleNamespace
    from accelerate import Accelerator
    from skill_sd_trl.skills.bank import SkillBank
    from skill_sd_trl.skills.callback import SkillSummarizerCallback
    from skill_sd_trl.skills.summarizers import ExperienceSummarizer
    from skill_sd_trl.skills.trajectory import Trajectory, Turn

    out = sys.argv[1]
    acc = Accelerator(cpu=True)
    rank = acc.process_index

    class Trainer:
        def __init__(self):
            self.accelerator = acc
            self.state = SimpleNamespace(global_step=0)
            self.pending = []
        def pop_finished_trajectories(self):
            out, self.pending = self.pending, []
            return out

    def traj(task):
        return Trajectory(task_id=task, env_name="sokoban", task=task, reward=1.0, success=True, completion=1.0,
                          turns=[Turn(action="Up", info={"actions": ["Up"], "events": []})])

    trainer, bank = Trainer(), SkillBank()
    cb = SkillSummarizerCallback(trainer, ExperienceSummarizer(), bank)
    task = "task-r%d" % rank  # each rank plays its own task: rank 0 must gather them
    trainer.pending = [traj(task)]
    cb.on_step_end(None, trainer.state, None)  # step 1: gathered to rank 0, queued there
    if rank == 0:
        assert cb.flush(30)
        assert len(bank) == 0  # multi-process: finished skills wait for the next synchronisation point
    cb.on_step_end(None, trainer.state, None)  # step 2: staged skills enter rank 0's bank, broadcast
    dump = {"step2": bank.to_dict(), "metrics": cb.metrics()}
    for shared in ("task-r0", "task-r1"):  # each task's group is split across both ranks: both select its skill
        sel = bank.select(shared)
        bank.record_outcome(shared, sel.skill_id, [rank + 0.5, 2.0])
    cb.on_step_end(None, trainer.state, None)  # step 3: each rank's feedback merged, broadcast
    dump["step3"] = bank.to_dict()
    cb.on_train_end(None, trainer.state, None)
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(dump, f)
    # leave together and close gloo: a rank exiting with the group's threads alive aborts ("terminate called")
    acc.wait_for_everyone()
    import torch.distributed
    torch.distributed.destroy_process_group()
    """
)


def test_two_process_banks_identical(tmp_path):
    script = tmp_path / "dist_skills.py"
    script.write_text(DIST_SCRIPT)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
         str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["step2"] == r1["step2"] and r0["step3"] == r1["step3"]
    tasks = r0["step3"]["tasks"]
    assert sorted(tasks) == ["task-r0", "task-r1"]
    for task in ("task-r0", "task-r1"):
        (entry,) = tasks[task]["entries"]
        # one selection (and one outcome report) per task per window, though both ranks made it; every reward counts
        assert (entry["selections"], entry["outcomes"], entry["reward_count"]) == (1, 1, 4)
        assert entry["reward_sum"] == pytest.approx(0.5 + 2.0 + 1.5 + 2.0)
        assert entry["skill"]["summarizer"] == "experience"
    assert r0["step3"]["counters"]["selections"] == 2
    assert r0["metrics"]["skills/added"] == 2 and r1["metrics"]["skills/added"] == 0
    assert r1["metrics"]["skills/bank_size"] == 2


@pytest.mark.parametrize("wait", [0.0, 10.0])
def test_wait_for_skills_holds_the_step_until_its_skills_are_in_the_bank(wait):
    trainer, bank = FakeTrainer(), SkillBank()
    cb = SkillSummarizerCallback(trainer, SlowSummarizer(0.3), bank, wait_for_skills=wait)
    trainer.pending = [traj("a"), traj("b")]
    cb.on_step_end(None, trainer.state, None)
    if wait:  # both trajectories' skills are stored before the next generation batch
        assert sorted(bank.tasks()) == ["a", "b"] and cb.metrics()["skills/queued"] == 0
    else:  # asynchronous: the step returns at once, the skills arrive later
        assert bank.tasks() == [] and cb.metrics()["skills/queued"] >= 1
        assert cb.flush(timeout=10) and sorted(bank.tasks()) == ["a", "b"]
    cb.close()
    with pytest.raises(ValueError, match="wait_for_skills"):
        SkillSummarizerCallback(trainer, SlowSummarizer(0.0), bank, wait_for_skills=-1)
