"""bench/appworld_context_probe.py: each teacher context holds what it says (the task's own solution, a sibling
world's, or nothing), and the probe scores the reference answer under each."""

from __future__ import annotations

import math

from _bench import load_bench


def _text(prompt) -> str:
    return "\n".join(m["content"] for m in prompt)


def test_each_context_shows_the_teacher_what_it_names():
    probe = load_bench("appworld_context_probe")
    spec, pairs = probe.rows_of(0)
    assert len(pairs) == 16
    for row, demo in pairs:
        assert spec.scenario_of(demo["task_id"]) == spec.scenario_of(row["task_id"])  # the same template
        assert demo["task_id"].endswith("-s10000") and demo["task_id"] != row["task_id"]  # another world
        own, demo_code = row["ground_truth"].strip(), demo["ground_truth"].strip()
        texts = {kind: _text(probe.context_prompt(spec, row, demo, kind)) for kind in probe.KINDS}
        assert own not in texts["none"] and demo_code not in texts["none"]
        assert own in texts["own_skill"] and demo_code in texts["sibling_skill"] and own in texts["ground_truth"]
        if own != demo_code:  # some templates' code names nothing of its world (a balance): the same on every world
            assert demo_code not in texts["own_skill"] and own not in texts["sibling_skill"]
        assert probe.play_one_turn(spec, row, row["answer"])[0]  # the answer scored is the one that solves it


def test_probe_scores_the_reference_answer_under_every_context(tiny_model_path):
    probe = load_bench("appworld_context_probe")
    spec, pairs = probe.rows_of(0)
    results = probe.probe(tiny_model_path, [(0, row, demo) for row, demo in pairs[:2]], {0: spec}, max_new_tokens=4)
    assert list(results) == list(probe.KINDS)
    for kind, r in results.items():
        assert r["tasks"] == 2 and [t["task_id"] for t in r["per_task"]] == [row["task_id"] for row, _ in pairs[:2]]
        assert math.isclose(r["answer_logp_per_token"], sum(t["answer_logp_per_token"] for t in r["per_task"]) / 2)
        assert all(t["answer_logp_per_token"] < 0 for t in r["per_task"])
        assert r["acc"] == 0.0  # four random tokens solve nothing
    # a longer prompt per context: the skill's, then the ground truth's, over the bare task
    tokens = {kind: r["per_task"][0]["prompt_tokens"] for kind, r in results.items()}
    assert tokens["none"] < tokens["ground_truth"] < tokens["own_skill"]
