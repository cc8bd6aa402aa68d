"""Trajectory rendering for the summarizer, and the per-environment summary prompt templates."""

import re

import pytest

from skill_sd_trl.skills.prompts import DEFAULT_PROMPTS, PromptBook, PromptTemplateError, SummaryPrompt
from skill_sd_trl.skills.render import order_for_summary, render_trajectories, render_trajectory
from skill_sd_trl.trajectory import Trajectory, Turn


def long_traj(n_turns=50, obs_chars=40, **kw):
    turns = [
        Turn(action=f"<answer>move{i}</answer>", observation=f"board after {i} " + "#" * obs_chars,
             info={"actions": [f"move{i}"], "events": ["wall_bump"] if i == 7 else []})
        for i in range(1, n_turns + 1)
    ]
    defaults = dict(task_id="lvl-3", env_name="sokoban", task="Push the boxes onto the targets.", turns=turns,
                    reward=-2.5, success=False, completion=0.5, stop_reason="max_steps")
    defaults.update(kw)
    return Trajectory(**defaults)


def test_short_trajectory_rendered_fully():
    traj = long_traj(3)
    text = render_trajectory(traj, max_chars=5000)
    assert "elided" not in text
    assert text.startswith("Task (sokoban, id lvl-3):\nPush the boxes onto the targets.")
    for i in (1, 2, 3):
        assert f"Turn {i}:\n  Action: <answer>move{i}</answer>\n  Applied actions: move{i}" in text
        assert f"Observation: board after {i} " in text
    assert text.endswith("Outcome: NOT SOLVED | reward -2.500 | completion 50% | 3 turns | stop reason: max_steps")


def test_truncation_keeps_start_and_end_with_elided_count():
    traj = long_traj(50)
    text = render_trajectory(traj, max_chars=1500)
    assert len(text) <= 1500
    kept = [int(k) for k in re.findall(r"^Turn (\d+)", text, flags=re.M)]
    assert kept[0] == 1 and kept[-1] == 50
    elided = int(re.search(r"\[\.\.\. (\d+) turns elided \.\.\.\]", text).group(1))
    assert elided == 50 - len(kept) and elided > 0
    # Head and tail are contiguous runs around the marker.
    head = [k for k in kept if k < 25]
    tail = [k for k in kept if k >= 25]
    assert head == list(range(1, len(head) + 1)) and tail == list(range(51 - len(tail), 51))
    assert abs(len(head) - len(tail)) <= 1
    assert "Task (sokoban" in text and "Outcome: NOT SOLVED | reward -2.500" in text


def test_invalid_turn_events_and_huge_observation_clipped():
    traj = long_traj(2)
    traj.turns[0] = Turn(action="blah", observation="x" * 50_000, valid=False,
                         info={"actions": [], "events": ["invalid_action"]})
    text = render_trajectory(traj, max_chars=2000)
    assert len(text) <= 2000
    assert "Turn 1 (INVALID):" in text and "Events: invalid_action" in text
    assert "chars cut ...]" in text and "Turn 2:" in text and "Outcome:" in text


def test_render_rejects_tiny_budget():
    with pytest.raises(ValueError, match="max_chars=50 is too small"):
        render_trajectory(long_traj(2), max_chars=50)


def test_order_for_summary_keeps_best_and_worst():
    trajs = [long_traj(1, reward=r, success=r > 5) for r in (1, 9, 3, 7, -4, 0)]
    chosen = order_for_summary(trajs, 3)
    assert [t.reward for t in chosen] == [9, 7, -4]
    text = render_trajectories(trajs, max_chars=4000, max_trajectories=3)
    assert text.count("=== Episode") == 3 and "=== Episode 3 of 3 ===" in text
    assert "Task (" not in text  # stated once by the prompt, not per episode


def test_prompt_book_picks_per_environment():
    book = PromptBook()
    assert book.for_env("sokoban") is DEFAULT_PROMPTS["sokoban"]
    assert book.for_env("Sokoban-6x6") is DEFAULT_PROMPTS["sokoban"]
    assert book.for_env("appworld") is DEFAULT_PROMPTS["appworld"]
    assert book.for_env("mystery") is DEFAULT_PROMPTS["generic"]
    custom = PromptBook({"sokoban": "Boxes! {trajectories}", "generic": "G {trajectory}"})
    assert custom.for_env("sokoban").user == "Boxes! {trajectories}"
    assert custom.for_env("other").user == "G {trajectory}"
    assert custom.for_env("appworld") is DEFAULT_PROMPTS["appworld"]
    single = PromptBook("All envs: {trajectories}")
    assert single.for_env("appworld").user == "All envs: {trajectories}"


def test_prompt_render_fills_placeholders():
    trajs = [long_traj(3, reward=1.0, success=True), long_traj(4)]
    messages = DEFAULT_PROMPTS["sokoban"].render(trajs, max_chars=6000)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert "Sokoban level (id lvl-3):\nPush the boxes onto the targets." in user
    assert "2 episode(s) on this level (1 solved it; best reward 1.000)" in user
    assert "=== Episode 1 of 2 ===" in user and '"golden_workflow": "<' in user
    assert "{" in user and "{task" not in user
    custom = SummaryPrompt(user='Return {{"success_analysis": ...}} for {task_id}: {trajectories}', system="")
    msgs = custom.render(trajs)
    assert len(msgs) == 1  # an empty system template sends no system message
    assert msgs[0]["content"].startswith('Return {"success_analysis": ...} for lvl-3: === Episode 1')


@pytest.mark.parametrize(
    "template,message",
    [
        ("Summarize the episodes.", "must contain {trajectories}"),
        ("{trajectories} {foo}", "unknown placeholder {foo}; allowed: {task}"),
        ('{trajectories} {"a": 1}', 'unknown placeholder {"a"'),
        ("{trajectories} {", "is not a valid format string"),
        ("{trajectories} }", "write literal braces as"),
        ("{trajectories!r}", "must not have a format spec or conversion"),
        ("{task.__class__} {trajectories}", "unknown placeholder {task.__class__}"),
    ],
)
def test_prompt_template_validation(template, message):
    with pytest.raises(PromptTemplateError, match=re.escape(message)):
        SummaryPrompt(user=template)


def test_prompt_override_type_error():
    with pytest.raises(PromptTemplateError, match="prompt override must be a string"):
        PromptBook(42)
