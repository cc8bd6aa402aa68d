"""SkillBank: UCB1 order, strategies, capacity, de-duplication, thread safety, persistence."""

import json
import math
import os
import threading

import pytest

from skill_sd_trl import atomic as atomic_module
from skill_sd_trl.skills.bank import SkillBank, combine_rank_deltas, subtract_deltas
from skill_sd_trl.skills.provider import SkillProvider, SkillSelection
from skill_sd_trl.skills.schema import Skill
from skill_sd_trl.skills.show import format_bank
from skill_sd_trl.skills.show import main as show_main


def sk(name, task="t"):
    return Skill(f"success {name}", f"mistake {name}", f"workflow {name}", task_id=task)


def test_implements_provider_protocol_and_empty_task():
    bank = SkillBank()
    assert isinstance(bank, SkillProvider)
    assert bank.select("nothing", {}) is None
    assert bank.peek("nothing") is None


def test_ucb_order_hand_computed():
    bank = SkillBank(ucb_c=1.0)
    for name in "ABC":
        assert bank.add(sk(name))
    ids = [s.skill_id for s in bank.skills("t")]
    assert ids == ["t#0", "t#1", "t#2"]
    # Untried first, oldest first.
    picks = [bank.select("t", {}).skill_id for _ in range(3)]
    assert picks == ids
    bank.record_outcome("t", "t#0", [1.0, 0.0])  # A: mean 0.5
    bank.record_outcome("t", "t#1", [0.2])  # B: mean 0.2
    bank.record_outcome("t", "t#2", [0.9, 0.7])  # C: mean 0.8
    # N = 3, n = 1 each: the bonus sqrt(ln 3) = 1.048147 is equal, so the best mean wins.
    scores = bank.ucb_scores("t")
    assert scores["t#0"] == pytest.approx(0.5 + 1.0481470736)
    assert scores["t#2"] == pytest.approx(0.8 + 1.0481470736)
    assert bank.select("t", {}).skill_id == "t#2"
    # N = 4: C (n=2): 0.8 + sqrt(ln4/2) = 1.632555; A: 0.5 + sqrt(ln4) = 1.677410; B: 0.2 + 1.177410 = 1.377410.
    scores = bank.ucb_scores("t")
    assert scores == pytest.approx({"t#0": 1.677410, "t#1": 1.377410, "t#2": 1.632555}, abs=1e-6)
    assert bank.select("t", {}).skill_id == "t#0"  # exploration beats the greedy choice C
    # A selected but no outcome yet for that selection: mean stays 0.5, n=2, N=5.
    # A: 0.5 + sqrt(ln5/2) = 1.397236; B: 0.2 + sqrt(ln5) = 1.468642; C: 0.8 + sqrt(ln5/2) = 1.697236.
    assert bank.select("t", {}).skill_id == "t#2"
    # With c = 0 UCB is greedy on the mean.
    greedy = SkillBank.from_dict({**bank.to_dict(), "config": {**bank.to_dict()["config"], "ucb_c": 0.0}})
    assert greedy.peek("t").skill_id == "t#2"


def test_new_skill_is_tried_before_any_known_one():
    bank = SkillBank()
    bank.add(sk("A"))
    bank.select("t")
    bank.record_outcome("t", "t#0", [10.0])
    bank.add(sk("B"))
    assert bank.select("t").skill_id == "t#1"


def test_selection_text_is_rendered_skill():
    bank = SkillBank()
    bank.add(sk("A"))
    sel = bank.select("t", {"prompt": "ignored"})
    assert isinstance(sel, SkillSelection)
    assert sel.text == bank.skills("t")[0].to_text() and "workflow A" in sel.text


def test_latest_and_best_strategies():
    bank = SkillBank(strategy="latest")
    for name in "ABC":
        bank.add(sk(name))
    assert bank.select("t").skill_id == "t#2"
    assert bank.peek("t", "best").skill_id == "t#2"  # nothing rated yet: best falls back to latest
    bank.record_outcome("t", "t#0", [0.9])
    bank.record_outcome("t", "t#1", [0.3, 0.5])
    bank.record_outcome("t", "t#2", [0.1])
    assert bank.peek("t", "best").skill_id == "t#0"
    bank.record_outcome("t", "t#1", [2.0])  # B: (0.3+0.5+2.0)/3 = 0.9333
    assert bank.peek("t", "best").skill_id == "t#1"
    assert bank.select("t").skill_id == "t#2"  # still "latest"
    with pytest.raises(ValueError, match="strategy='random' is not supported"):
        SkillBank(strategy="random")


def test_capacity_evicts_worst_rated_protecting_untried():
    bank = SkillBank(capacity_per_task=3)
    for name in "ABC":
        bank.add(sk(name))
    bank.record_outcome("t", "t#0", [0.5])
    bank.record_outcome("t", "t#1", [0.1])  # worst rated; C (t#2) is unrated and protected
    assert bank.add(sk("D"))
    assert [s.skill_id for s in bank.skills("t")] == ["t#0", "t#2", "t#3"]
    assert bank.stats()["evicted"] == 1
    # Only A is rated now: it is the incumbent and stays; the oldest unrated skill (C) goes.
    assert bank.add(sk("E"))
    assert [s.skill_id for s in bank.skills("t")] == ["t#0", "t#3", "t#4"]
    # Every skill rated: the worst goes, even the incumbent's runner-up.
    bank.record_outcome("t", "t#3", [0.9])
    bank.record_outcome("t", "t#4", [0.2])
    assert bank.add(sk("F"))
    assert [s.skill_id for s in bank.skills("t")] == ["t#0", "t#3", "t#5"]
    # No rated skill: the oldest goes.
    fresh = SkillBank(capacity_per_task=2)
    for name in "ABC":
        fresh.add(sk(name))
    assert [s.skill_id for s in fresh.skills("t")] == ["t#1", "t#2"]
    # Other tasks are unaffected by this task's capacity.
    assert bank.add(sk("A", task="u")) and len(bank.skills("u")) == 1


def test_best_rated_skill_survives_a_flood_of_per_trajectory_skills():
    """Trajectory mode writes up to G skills per task per step while UCB rates one: the rated incumbent must not be
    evicted by the unrated newcomers (before: the only rated skill was the first to go)."""
    bank = SkillBank(capacity_per_task=4)
    for name in "ABCD":
        bank.add(sk(name))
    for skill_id, reward in (("t#0", 0.2), ("t#1", 0.9)):
        bank.record_outcome("t", skill_id, [reward])
    for step in range(3):  # three steps of 4 new unrated skills each (G = 4)
        for g in range(4):
            assert bank.add(sk(f"step{step}-traj{g}"))
    ids = [s.skill_id for s in bank.skills("t")]
    assert len(ids) == 4 and "t#1" in ids  # bounded, and the best (0.9) is kept
    assert "t#0" not in ids  # the worse rated skill went first
    assert bank.peek("t", "best").skill_id == "t#1"
    # capacity 1: the single slot always takes the newcomer
    one = SkillBank(capacity_per_task=1)
    one.add(sk("A"))
    one.record_outcome("t", "t#0", [5.0])
    assert one.add(sk("B")) and [s.skill_id for s in one.skills("t")] == ["t#1"]


def test_capacity_oldest_policy():
    bank = SkillBank(capacity_per_task=2, eviction="oldest")
    for name in "ABC":
        bank.add(sk(name))
    bank.record_outcome("t", "t#1", [-5.0])
    bank.add(sk("D"))
    assert [s.skill_id for s in bank.skills("t")] == ["t#2", "t#3"]


def test_dedup_normalised_text_per_task_and_after_eviction():
    bank = SkillBank(capacity_per_task=2)
    assert bank.add(Skill("Push Left", "corner", "L, U", task_id="t"))
    assert not bank.add(Skill("  push   left ", "CORNER", "l,  u\n", task_id="t", reward=3.0))
    assert bank.add(Skill("Push Left", "corner", "L, U", task_id="other"))  # other task: not a duplicate
    assert bank.add(Skill("x", "y", "z", task_id="t"))
    assert bank.add(Skill("x2", "y", "z", task_id="t"))  # evicts the oldest (none rated)
    assert not bank.add(Skill("push left", "corner", "L, U", task_id="t"))  # was evicted: still a duplicate
    stats = bank.stats()
    assert (stats["added"], stats["duplicates"], stats["evicted"], stats["skills"]) == (4, 2, 1, 3)


def test_record_outcome_unknown_and_nonfinite():
    bank = SkillBank()
    bank.add(sk("A"))
    bank.record_outcome("t", "t#99", [1.0])
    bank.record_outcome("t", "t#0", [1.0, float("nan"), float("inf"), 3.0])
    entry = bank.entries("t")[0]
    assert (entry.reward_count, entry.reward_sum, entry.outcomes) == (2, 4.0, 1)
    stats = bank.stats()
    assert (stats["unknown_outcomes"], stats["nonfinite_rewards"]) == (1, 2)


def test_add_validates_input():
    bank = SkillBank()
    with pytest.raises(ValueError, match="skill.task_id is empty"):
        bank.add(Skill("a", "b", "c"))
    with pytest.raises(TypeError, match="expects a Skill"):
        bank.add({"success_analysis": "a"})
    with pytest.raises(ValueError, match="capacity_per_task=0"):
        SkillBank(capacity_per_task=0)


def test_thread_safety_counts():
    bank = SkillBank(capacity_per_task=1000)
    n_threads, per_thread = 4, 150
    errors = []

    def writer(k):
        try:
            for i in range(per_thread):
                bank.add(sk(f"{k}-{i}"))
                bank.add(sk(f"{k}-{i}"))  # duplicate of its own
                bank.add(sk(f"shared-{i}"))  # duplicate across threads
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader():
        try:
            for _ in range(per_thread * 2):
                sel = bank.select("t")
                if sel is not None:
                    bank.record_outcome("t", sel.skill_id, [1.0, 0.0])
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(n_threads)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = bank.stats()
    assert stats["skills"] == n_threads * per_thread + per_thread
    assert stats["added"] == stats["skills"]
    assert stats["duplicates"] == n_threads * per_thread * 3 - stats["added"]
    assert len({s.skill_id for s in bank.skills("t")}) == stats["skills"]
    entries = bank.entries("t")
    assert sum(e.selections for e in entries) == stats["selections"] == 2 * per_thread * 2
    assert sum(e.reward_count for e in entries) == 2 * stats["outcomes"]


def _populated():
    bank = SkillBank(capacity_per_task=2, ucb_c=0.7)
    for name in "ABC":
        bank.add(sk(name))
    bank.add(sk("A", task="u"))
    bank.add(sk("A"))  # duplicate
    bank.select("t")
    bank.record_outcome("t", bank.select("t").skill_id, [0.1, 0.30000000000000004, -2.5])
    return bank


def test_save_load_round_trip_exact(tmp_path):
    bank = _populated()
    path = tmp_path / "bank.json"
    bank.save(path)
    loaded = SkillBank.load(path)
    assert loaded == bank
    assert loaded.to_dict() == bank.to_dict()
    assert json.loads(path.read_text())["version"] == 1
    assert loaded.ucb_scores("t") == bank.ucb_scores("t")
    assert [e.selections for e in loaded.entries("t")] == [e.selections for e in bank.entries("t")]
    # Same future: both pick the same skill, and new ids continue from the same counter.
    assert loaded.select("t") == bank.select("t")
    assert loaded.add(sk("Z")) and bank.add(sk("Z"))
    assert loaded.skills("t")[-1].skill_id == bank.skills("t")[-1].skill_id
    # In-place load keeps the object identity (the trainer holds it).
    other = SkillBank()
    ref = other
    other.load_state_dict(bank.to_dict())
    assert ref is other and other == bank and other.capacity_per_task == 2


def test_load_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{truncated")
    with pytest.raises(ValueError, match="is not a valid skill bank file"):
        SkillBank.load(bad)
    with pytest.raises(ValueError, match="unsupported skill bank version 99"):
        SkillBank.from_dict({**SkillBank().to_dict(), "version": 99})
    with pytest.raises(ValueError, match="missing the field 'next_seq'"):
        SkillBank.from_dict({k: v for k, v in SkillBank().to_dict().items() if k != "next_seq"})


def test_crash_during_save_keeps_last_good_file(tmp_path, monkeypatch):
    path = tmp_path / "bank.json"
    good = _populated()
    good.save(path)
    before = path.read_bytes()
    bigger = _populated()
    bigger.add(sk("new one", task="v"))

    real_dump = json.dump

    def dump_half_then_crash(obj, f, **kw):
        f.write(json.dumps(obj)[:100])  # a partial file on disk...
        raise RuntimeError("simulated crash mid-write")

    monkeypatch.setattr(atomic_module.json, "dump", dump_half_then_crash)
    with pytest.raises(RuntimeError, match="simulated crash mid-write"):
        bigger.save(path)
    monkeypatch.setattr(atomic_module.json, "dump", real_dump)
    assert path.read_bytes() == before
    assert SkillBank.load(path) == good
    assert os.listdir(tmp_path) == ["bank.json"]  # no temp file left behind

    def replace_crash(src, dst):
        raise OSError("simulated crash at rename")

    monkeypatch.setattr(atomic_module.os, "replace", replace_crash)
    with pytest.raises(OSError, match="simulated crash at rename"):
        bigger.save(path)
    monkeypatch.undo()
    assert SkillBank.load(path) == good
    assert os.listdir(tmp_path) == ["bank.json"]
    bigger.save(path)
    assert SkillBank.load(path) == bigger


def test_drain_and_merge_deltas():
    main = _populated()
    replica = SkillBank.from_dict(main.to_dict())
    main.drain_deltas()
    sel = replica.select("t")
    replica.record_outcome("t", sel.skill_id, [1.0, 2.0])
    replica.record_outcome("t", "t#0", [5.0])  # evicted id: skipped on merge
    deltas = replica.drain_deltas()
    assert replica.drain_deltas() == {}
    before = {e.skill.skill_id: e for e in main.entries("t")}[sel.skill_id]
    main.merge_deltas(deltas)
    after = {e.skill.skill_id: e for e in main.entries("t")}[sel.skill_id]
    assert after.selections == before.selections + 1
    assert after.reward_sum == pytest.approx(before.reward_sum + 3.0)
    assert after.reward_count == before.reward_count + 2


def _two_rank_window():
    """One synchronisation window of a 2-rank run: task "t" has its group of 4 split 2 + 2 across the ranks, task
    "v" lives on rank 1 only. Both ranks hold the same bank, so both select the same skill for "t"."""
    main = _populated()
    main.add(sk("V", task="v"))
    main.drain_deltas()
    before = {e.skill.skill_id: e for e in main.entries("t")}
    replica = SkillBank.from_dict(main.to_dict())
    sel0, sel1 = main.select("t"), replica.select("t")
    assert sel0.skill_id == sel1.skill_id  # deterministic UCB on identical banks
    main.record_outcome("t", sel0.skill_id, [1.0, 2.0])
    replica.record_outcome("t", sel1.skill_id, [3.0, 4.0])
    replica.record_outcome("v", replica.select("v").skill_id, [0.5, 0.5, 0.5, 0.5])
    return main, replica, before[sel0.skill_id]


def test_combine_rank_deltas_counts_a_split_selection_once():
    d0 = {"t": {"t#1": [1, 1, 3.0, 2]}}
    d1 = {"t": {"t#1": [1, 1, 7.0, 2]}, "u": {"u#5": [1, 1, 2.0, 4]}}
    before = json.dumps([d0, d1])
    combined = combine_rank_deltas([d0, d1])
    assert combined == {"t": {"t#1": [1, 1, 10.0, 4]}, "u": {"u#5": [1, 1, 2.0, 4]}}
    assert json.dumps([d0, d1]) == before  # pure
    assert combine_rank_deltas([]) == {} and combine_rank_deltas([{}, {}]) == {}
    # two windows' worth on one rank (2 selections) against one on the other: the max, 2
    assert combine_rank_deltas([{"t": {"a": [2, 2, 1.0, 4]}}, {"t": {"a": [1, 1, 1.0, 2]}}]) == {"t": {"a": [2, 2, 2.0, 6]}}
    # what rank 0 must still merge after recording its own part
    assert subtract_deltas(combined, d0) == {"t": {"t#1": [0, 0, 7.0, 2]}, "u": {"u#5": [1, 1, 2.0, 4]}}
    assert subtract_deltas(combined, combined) == {}


def test_two_rank_merge_counts_one_selection_per_task_per_window():
    main, replica, before = _two_rank_window()
    own, other = main.drain_deltas(), replica.drain_deltas()
    main.merge_deltas(subtract_deltas(combine_rank_deltas([own, other]), own))
    after = {e.skill.skill_id: e for e in main.entries("t")}[before.skill.skill_id]
    # one selection and one outcome report for the window (merging each rank's delta, as before, gave 2 and 2)
    assert (after.selections, after.outcomes) == (before.selections + 1, before.outcomes + 1)
    assert (after.reward_sum, after.reward_count) == (pytest.approx(before.reward_sum + 10.0), before.reward_count + 4)
    (v,) = main.entries("v")  # selected on rank 1 only: its statistics arrive whole
    assert (v.selections, v.outcomes, v.reward_count, v.reward_sum) == (1, 1, 4, 2.0)
    stats = main.stats()
    assert (stats["selections"], stats["outcomes"]) == (2 + 1 + 1, 1 + 1 + 1)  # _populated's 2 and 1, then t and v


def test_show_table_and_cli(tmp_path, capsys):
    bank = _populated()
    table = format_bank(bank)
    lines = table.splitlines()
    assert lines[0].startswith("3 skill(s) over 2 task(s); strategy=ucb ucb_c=0.7 capacity_per_task=2")
    assert lines[1].split() == ["task", "skill_id", "sel", "rollouts", "mean_r", "ucb", "src_r", "step",
                                "summarizer", "golden_workflow"]
    rows = {line.split()[1]: line.split() for line in lines[3:]}
    assert set(rows) == {"t#1", "t#2", "u#3"}
    assert rows["t#1"][2:6] == ["1", "0", "-", "0.583"]  # selected once, no outcome: mean 0 + 0.7*sqrt(ln2)
    assert rows["t#2"][2:5] == ["1", "3", "-0.700"]
    assert rows["u#3"][5] == "untried"
    assert "(no skills for task 'zzz')" in format_bank(bank, task="zzz")
    bank.save(tmp_path / "skill_bank.json")
    assert show_main([str(tmp_path), "--full", "--task", "u"]) == 0
    out = capsys.readouterr().out
    assert "u#3" in out and "t#1" not in out and "### Golden workflow\nworkflow A" in out
    assert show_main([str(tmp_path / "missing")]) == 2
    assert "no skill bank at" in capsys.readouterr().err


def test_ucb_math_constants():
    # The hand-computed constants above, checked against the formula once.
    assert math.sqrt(math.log(3)) == pytest.approx(1.0481470736)
    assert 0.8 + math.sqrt(math.log(4) / 2) == pytest.approx(1.632555, abs=1e-6)
