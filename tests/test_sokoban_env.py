"""Sokoban rendering, action parsing and the multi-turn SokobanEnv (rewards, budgets, invalid turns)."""

import random
import textwrap
import time

import pytest

from skill_sd_trl.envs.base import EpisodeScore, StepResult, TextEnv
from skill_sd_trl.envs.sokoban import (
    ACTIONS,
    LEGEND,
    Level,
    SokobanEnv,
    format_actions,
    generate_level,
    parse_actions,
    parse_board,
    render,
)
from skill_sd_trl.skills.trajectory import Turn

# Two boxes, open room: lets one scripted episode bump, push on, push off, push on again and solve.
SCRIPTED = textwrap.dedent(
    """\
    #######
    #     #
    #@$. .#
    #  $  #
    #     #
    #######"""
)
SCRIPT = [
    "<answer>Left</answer>",
    "<answer>Right</answer>",
    "Right",
    "<answer>right</answer>",
    "<answer>Down || Down || Left || Up</answer>",
]
CORNER = "#####\n#@$ #\n#.  #\n#####"


def _env_on(xsb: str, **kwargs) -> SokobanEnv:
    env = SokobanEnv(**kwargs)
    assert env.reset({"level": xsb}) is None
    return env


# --------------------------------------------------------------------------- rendering
def test_render_uses_the_legend_symbols():
    level = Level.from_xsb("######\n#+*$ #\n# $. #\n######")
    assert render(level) == "######\n#S√X_#\n#_XO_#\n######"
    assert render(str(level)) == render(level)
    assert render(level, sep=" ").splitlines()[1] == "# S √ X _ #"
    for symbol in "# _ O X √ P S".split():
        assert f"{symbol}: " in LEGEND


def test_render_draws_void_as_wall():
    assert render("  ####\n###  #\n#@$. #\n######") == "######\n###__#\n#PXO_#\n######"


def test_board_render_parse_round_trip_on_generated_levels():
    for seed in range(20):
        level = generate_level(seed, (6, 6), 1 + seed % 2)
        assert parse_board(render(level)) == level
        assert parse_board(render(level, sep=" ")) == level
        assert Level.from_xsb(str(level)) == level


def test_parse_board_errors_are_clear():
    with pytest.raises(ValueError, match="Rendered board: unknown character '@'"):
        parse_board("#####\n#@XO#\n#####")


# --------------------------------------------------------------------------- action grammar
def test_action_format_parse_round_trip():
    rng = random.Random(0)
    for _ in range(50):
        actions = [rng.choice(ACTIONS) for _ in range(rng.randint(1, 12))]
        text = format_actions(actions)
        assert parse_actions(f"<answer>{text}</answer>") == actions
        assert parse_actions(f"thinking...\n<answer>\n{text}\n</answer>") == actions
    with pytest.raises(ValueError, match="Unknown Sokoban actions"):
        format_actions(["up"])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<answer>Up || Left</answer>", ["Up", "Left"]),
        ("<ANSWER>up, DOWN,left right</ANSWER>", ["Up", "Down", "Left", "Right"]),
        ("<answer>Up\nLeft\n</answer>", ["Up", "Left"]),
        ("<answer>Up|Left;Right.</answer>", ["Up", "Left", "Right"]),
        ("<answer>'Up' || \"Down\"</answer>", ["Up", "Down"]),
        ("<answer>Up || Left", ["Up", "Left"]),  # stop string stripped the closing tag
        ("e.g. <answer>Down</answer> ... final: <answer>Right || Right</answer>", ["Right", "Right"]),
        ("Up || Right", ["Up", "Right"]),  # a bare move list is unambiguous
        ("", None),
        ("   \n ", None),
        ("!!!!!!!!!!!!", None),
        ("I would go up", None),
        ("<answer></answer>", None),
        ("<answer>Up || Jump</answer>", None),
        ("<answer>Up || 2</answer>", None),
        ("<answer>↑ ↓ ☃ 上</answer>", None),
        ("\x00\x01\ud800", None),
        (None, None),
        (123, None),
    ],
)
def test_parse_actions_is_tolerant_but_exact(text, expected):
    assert parse_actions(text) == expected


def test_parse_actions_handles_huge_input_quickly():
    start = time.perf_counter()
    assert parse_actions("Up " * 500_000) is None  # far beyond any real answer
    assert parse_actions("x" * 2_000_000 + "<answer>Up</answer>") == ["Up"]
    assert time.perf_counter() - start < 2.0


# --------------------------------------------------------------------------- environment
def test_env_is_a_text_env_and_reset_returns_none():
    env = SokobanEnv()
    assert isinstance(env, TextEnv) and env.name == "sokoban"
    assert env.reset({"level": SCRIPTED, "task_id": "x"}) is None
    assert env.level == Level.from_xsb(SCRIPTED) and env.steps_left == 40
    env.reset(level=CORNER, max_steps=7)  # TRL-style keyword row
    assert env.level == Level.from_xsb(CORNER) and env.steps_left == 7


def test_env_requires_reset_and_a_level_column():
    env = SokobanEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.step("<answer>Up</answer>")
    with pytest.raises(ValueError, match="`level` column"):
        env.reset({"prompt": "no level here"})
    with pytest.raises(ValueError, match="`max_steps` must be a positive integer"):
        env.reset({"level": CORNER, "max_steps": 0})
    with pytest.raises(ValueError, match="`reward_mode`"):
        SokobanEnv(reward_mode="dense")


def test_shaped_rewards_on_a_scripted_episode():
    env = _env_on(SCRIPTED)
    results = [env.step(turn) for turn in SCRIPT]
    # bump: -0.1 | onto target: -0.1 + 1 | off target: -0.1 - 1 | onto the other target: -0.1 + 1 |
    # three walks and the solving push: 4 * -0.1 + 1 + 10
    assert [r.reward for r in results] == pytest.approx([-0.1, 0.9, -1.1, 0.9, 10.6], abs=1e-12)
    assert sum(r.reward for r in results) == pytest.approx(11.2, abs=1e-12)
    assert env.total_reward == pytest.approx(11.2, abs=1e-12)
    assert [r.info["events"] for r in results] == [
        ["wall_bump"],
        ["box_on_target"],
        ["box_off_target"],
        ["box_on_target"],
        ["box_on_target", "solved"],
    ]
    assert results[-1].info["actions"] == ["Down", "Down", "Left", "Up"]
    assert [r.done for r in results] == [False, False, False, False, True]
    assert results[-1].stop_reason == "solved" and "solved" in results[-1].observation
    score = env.score()
    assert score == EpisodeScore(
        success=True,
        completion=1.0,
        info={"steps": 8, "invalid_actions": 0, "boxes_on_target": 2, "num_boxes": 2, "total_reward": 11.2},
    )


def test_success_only_rewards_on_the_same_episode():
    env = _env_on(SCRIPTED, reward_mode="success")
    rewards = [env.step(turn).reward for turn in ["nonsense"] + SCRIPT]
    assert rewards == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert env.score().success and env.score().info["invalid_actions"] == 1
    env = _env_on(SCRIPTED, reward_mode="success", format_penalty=-0.5)
    assert env.step("nonsense").reward == -0.5


def test_invalid_turns_pay_the_format_penalty_and_the_episode_continues():
    env = _env_on(SCRIPTED, format_penalty=-0.25)
    board = render(Level.from_xsb(SCRIPTED))
    garbage = ["", "!!!!!!", "x" * 1_000_000, "☃ é 😀 上", "<answer>Up || Jump</answer>", "<answer></answer>"]
    for n, text in enumerate(garbage, start=1):
        result = env.step(text)
        assert isinstance(result, StepResult)
        assert result.valid is False and result.done is False and result.stop_reason is None
        assert result.reward == -0.25
        assert result.info == {"actions": [], "events": ["invalid_action"]}
        assert "Invalid answer" in result.observation and "<answer>" in result.observation
        assert "Up, Down, Left, Right" in result.observation
        assert board in result.observation  # the board is shown again, unchanged
        assert env.invalid_actions == n and env.steps == 0
    ok = env.step("<answer>Right</answer>")
    assert ok.valid and ok.info["actions"] == ["Right"] and ok.reward == pytest.approx(0.9)
    assert env.score().info == {
        "steps": 1,
        "invalid_actions": 6,
        "boxes_on_target": 1,
        "num_boxes": 2,
        "total_reward": pytest.approx(-0.6),
    }
    Turn(action="Right", observation=ok.observation, valid=ok.valid, info=ok.info)  # contract-compatible info


def test_max_steps_stops_the_episode_mid_turn():
    env = _env_on(SCRIPTED, max_steps=3)
    result = env.step("<answer>Left || Left || Left || Left || Left</answer>")
    assert result.done and result.stop_reason == "max_steps"
    assert result.info["actions"] == ["Left", "Left", "Left"]
    assert result.info["events"] == ["wall_bump", "wall_bump", "wall_bump", "max_steps"]
    assert result.reward == pytest.approx(-0.3)
    assert "Steps left: 0" in result.observation and "budget is spent" in result.observation
    after = env.step("<answer>Right</answer>")
    assert after.done and after.info["events"] == ["episode_over"] and after.reward == 0.0
    score = env.score()
    assert not score.success and score.completion == 0.0 and score.info["steps"] == 3


def test_row_max_steps_overrides_the_default_and_solving_on_the_last_step_wins():
    env = SokobanEnv(max_steps=40)
    env.reset({"level": "#####\n#@$.#\n#####", "max_steps": 1})
    result = env.step("Right || Left")
    assert result.stop_reason == "solved" and result.info["actions"] == ["Right"]
    assert result.reward == pytest.approx(-0.1 + 1 + 10)


def test_actions_beyond_the_per_turn_cap_are_ignored_and_reported():
    env = _env_on(SCRIPTED, max_actions_per_turn=2)
    result = env.step("<answer>Up || Up || Up || Up</answer>")
    assert result.info["actions"] == ["Up", "Up"]
    assert result.info["events"] == ["wall_bump", "actions_truncated"]
    assert "2 extra move(s) were ignored" in result.observation
    assert env.steps == 2


def test_dead_corner_event_in_the_env():
    env = _env_on(CORNER)
    result = env.step("<answer>Right</answer>")
    assert result.info["events"] == ["box_in_dead_corner"]
    assert "stuck in a corner" in result.observation
    assert not result.done  # the episode goes on; the model must notice on its own
    assert result.reward == pytest.approx(-0.1)


def test_observation_is_the_board_plus_a_note():
    env = _env_on(SCRIPTED)
    result = env.step("<answer>Right</answer>")
    lines = result.observation.splitlines()
    assert lines[0] == "Moves applied: Right. A box was pushed onto a target."
    assert "\n".join(lines[1:7]) == render(env.level)
    assert lines[7] == "Boxes on targets: 1/2. Steps left: 39."


def test_lenient_actions_play_direction_words_with_a_format_penalty():
    from skill_sd_trl.envs.sokoban import SokobanEnv, parse_actions

    assert parse_actions("Your move is a left, then up") is None
    assert parse_actions("Your move is a left, then up", lenient=True) == ["Left", "Up"]
    assert parse_actions("uppercase leftover", lenient=True) is None  # whole words only
    xsb = "#####\n#@$.#\n#####"
    strict = SokobanEnv()
    strict.reset({"level": xsb})
    assert not strict.step("I will push it right").valid
    lenient = SokobanEnv(lenient_actions=True)
    lenient.reset({"level": xsb})
    result = lenient.step("I will push it right")
    assert result.valid and result.done and result.stop_reason == "solved"
    assert "lenient_parse" in result.info["events"]
    # -0.1 step + 1 box on target + 10 solved, minus the 0.1 format penalty
    assert result.reward == pytest.approx(10.8)
    exact = SokobanEnv(lenient_actions=True)
    exact.reset({"level": xsb})
    assert exact.step("<answer>Right</answer>").reward == pytest.approx(10.9)


def test_relative_positions_give_each_box_and_target_offset_from_the_player():
    from skill_sd_trl.envs.sokoban.render import relative_positions

    # player (2,1); boxes (2,2) and (3,3); targets (2,3) and (2,5)
    assert relative_positions(SCRIPTED) == "Box: 1 right; 1 down 2 right. Target: 2 right; 4 right."
    assert relative_positions("#####\n#.$@#\n#####") == "Box: 1 left. Target: 2 left."
    assert relative_positions("####\n#+ #\n# $#\n####") == "Box: 1 down 1 right. Target: here."
    # the offsets are a faithful reading of the board: walking them from the player lands on the objects
    for seed in range(20):
        level = generate_level(f"offsets/{seed}", (6, 6), 1, min_solution_length=2, max_solution_length=6)
        text = relative_positions(level)
        box_text = text.split(". Target: ")[0].removeprefix("Box: ")
        row, col = level.player
        for word, count in zip(box_text.split()[1::2], map(int, box_text.split()[0::2])):
            dr, dc = {"down": (1, 0), "up": (-1, 0), "right": (0, 1), "left": (0, -1)}[word]
            row, col = row + count * dr, col + count * dc
        assert (row, col) in level.boxes


def test_compact_observations_show_the_board_as_the_compact_prompt_does():
    from skill_sd_trl.envs.sokoban import make_sokoban_dataset
    from skill_sd_trl.envs.sokoban.render import relative_positions

    row = make_sokoban_dataset("short", "test", seed=0, prompt_style="compact")[0]
    env = SokobanEnv(prompt_style="compact")
    env.reset(row)
    before = row["prompt"][1]["content"].splitlines()
    assert before[:6] == render(row["level"]).splitlines()
    assert before[6] == relative_positions(row["level"]) and before[7] == "Steps left: 20."
    result = env.step("<answer>Up</answer>")
    lines = result.observation.splitlines()
    assert lines[0].startswith("Moves applied: Up.")
    assert lines[1:7] == render(env.level).splitlines()  # the board after the move, drawn as in the prompt
    assert lines[7] == relative_positions(env.level) and lines[8] == "Steps left: 19."
    assert lines[7] != before[6]  # the offsets moved with the player
    with pytest.raises(ValueError, match="`prompt_style` must be one of"):
        SokobanEnv(prompt_style="terse")
