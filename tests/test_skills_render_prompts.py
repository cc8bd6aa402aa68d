"""Trajectory rendering for the summarizer, and the per-environment summary prompt templates."""

import re

import pytest

from skill_sd_trl.envs.appworld.summary import SUMMARY_PROMPT as APPWORLD_PROMPT
from skill_sd_trl.envs.sokoban.summary import SUMMARY_PROMPT as SOKOBAN_PROMPT
from skill_sd_trl.skills.prompts import GENERIC_PROMPT, PromptBook, PromptTemplateError, SummaryPrompt
from skill_sd_trl.skills.render import (
    FOCUS_HEADER,
    contrast_shown,
    order_for_summary,
    render_focus,
    render_trajectories,
    render_trajectory,
)
from skill_sd_trl.skills.trajectory import Trajectory, Turn


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
    env_prompts = {"sokoban": SOKOBAN_PROMPT, "appworld": APPWORLD_PROMPT}  # what EnvSpec.summary_prompt brings
    book = PromptBook(env_prompts=env_prompts)
    assert book.for_env("sokoban") is SOKOBAN_PROMPT
    assert book.for_env("Sokoban-6x6") is SOKOBAN_PROMPT
    assert book.for_env("appworld") is APPWORLD_PROMPT
    assert book.for_env("mystery") is GENERIC_PROMPT
    assert PromptBook().for_env("sokoban") is GENERIC_PROMPT  # skills/ knows no environment by itself
    custom = PromptBook({"sokoban": "Boxes! {trajectories}", "generic": "G {trajectory}"}, env_prompts)
    assert custom.for_env("sokoban").user == "Boxes! {trajectories}"
    assert custom.for_env("other").user == "G {trajectory}"
    assert custom.for_env("appworld") is APPWORLD_PROMPT
    single = PromptBook("All envs: {trajectories}")
    assert single.for_env("appworld").user == "All envs: {trajectories}"


def test_prompt_render_fills_placeholders():
    trajs = [long_traj(3, reward=1.0, success=True), long_traj(4)]
    messages = SOKOBAN_PROMPT.render(trajs, max_chars=6000)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert "Sokoban level (id lvl-3):\nPush the boxes onto the targets." in user
    assert "Below are 2 episode(s) of the agent on this task (1 solved it; best reward 1.000)." in user
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


def tagged(tag, n_turns=3, obs_chars=40, **kw):
    traj = long_traj(n_turns, obs_chars=obs_chars, **kw)
    for turn in traj.turns:
        turn.action = f"<answer>{tag}</answer>"
    return traj


def test_render_focus_marks_the_described_episode_and_bounds_contrast():
    focus = tagged("FOCUSMOVE", n_turns=40, reward=-1.0)
    others = [tagged(f"OTHER{k}", reward=float(k), success=k > 2) for k in range(6)]
    for budget in (600, 1500, 4000, 12000):
        text = render_focus(focus, others + [focus], max_chars=budget, max_trajectories=4)
        assert len(text) <= budget
        assert text.startswith(FOCUS_HEADER + "\n")
        blocks = text.split("\n\n=== Contrast episode ")
        assert "FOCUSMOVE" in blocks[0] and all("FOCUSMOVE" not in b for b in blocks[1:])  # never shown twice
        assert len(blocks[0]) >= budget // 2 - 200  # the focus keeps at least about half the budget
        m = len(blocks) - 1
        assert m == len(contrast_shown(others, budget, 4)) and m <= 3
        assert all(b.startswith(f"{k} of {m} (another attempt at the same task, for comparison only) ===")
                   for k, b in enumerate(blocks[1:], 1))
    # small budgets drop contrast episodes rather than overrun; large ones show best and worst
    assert len(contrast_shown(others, 600, 4)) == 1
    assert [t.reward for t in contrast_shown(others, 12000, 4)] == [5.0, 4.0, 0.0]
    assert contrast_shown(others, 12000, 1) == []
    assert "Contrast" not in render_focus(focus, others, max_chars=3000, max_trajectories=1)
    with pytest.raises(ValueError, match="max_chars=500 is too small"):
        render_focus(focus, others, max_chars=500)


def test_prompt_render_with_focus_fills_the_focus_placeholders():
    focus = tagged("FOCUSMOVE", reward=-2.5)
    twin = tagged("FOCUSMOVE", reward=-2.5)  # equal content, another episode: contrast
    winner = tagged("WIN", reward=4.0, success=True)
    user = SOKOBAN_PROMPT.render([focus, twin, winner], max_chars=6000, focus=focus)[1]["content"]
    assert ("Below is the episode to summarize (NOT SOLVED, reward -2.500), followed by 2 other episode(s) of the "
            "same task for contrast (1 of them solved it). Write the skill about the episode to summarize") in user
    assert user.count(FOCUS_HEADER) == 1 and user.count("=== Contrast episode") == 2
    custom = SummaryPrompt(user="{num_trajectories}/{num_contrast}/{num_successes}/{best_reward}: {trajectories}",
                           system="")
    (msg,) = custom.render([focus, twin, winner], max_chars=6000, max_trajectories=2, focus=focus)
    assert msg["content"].startswith("2/1/1/4.000: " + FOCUS_HEADER)
    (alone,) = custom.render([], max_chars=6000, focus=focus)
    assert alone["content"].startswith("1/0/0/-2.500: " + FOCUS_HEADER) and "Contrast" not in alone["content"]
    (group,) = custom.render([focus, winner], max_chars=6000)
    assert group["content"].startswith("2/0/1/4.000: === Episode 1 of 2")
