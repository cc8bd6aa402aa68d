"""Sokoban board model, XSB format, push rules, optimal solver and reverse-play generator."""

import os
import subprocess
import sys
import textwrap

import pytest

from skill_sd_trl.envs.sokoban import (
    ACTIONS,
    Level,
    SokobanEnv,
    SolverLimitError,
    apply_moves,
    generate_level,
    is_dead_corner,
    move,
    parse_xsb_collection,
    solve,
)

# --------------------------------------------------------------------------- hand-made levels
ONE_PUSH = "#####\n#@$.#\n#####"
WALK_THEN_PUSH = textwrap.dedent(
    """\
    ######
    #@   #
    # $  #
    # .  #
    ######"""
)
# The box must go right twice, then down three times; turning the corner costs the player two extra moves.
AROUND_CORNER = textwrap.dedent(
    """\
    #######
    #     #
    #@$   #
    #### ##
    #### ##
    ####.##
    #######"""
)
TWO_BOXES = textwrap.dedent(
    """\
    ######
    #@$ .#
    #  $.#
    ######"""
)
BOX_IN_CORNER = textwrap.dedent(
    """\
    #####
    #@ $#
    #.  #
    #####"""
)
# Both boxes are live on their own, but the first one blocks the corridor to the second.
BLOCKED_CORRIDOR = "#######\n#@$.$.#\n#######"

KNOWN_OPTIMA = [
    (ONE_PUSH, 1),
    (WALK_THEN_PUSH, 2),
    (AROUND_CORNER, 7),
    (TWO_BOXES, 5),
]


def _brute_force_shortest(level: Level, limit: int) -> int | None:
    """Length of the shortest solving move sequence up to ``limit``, by exhaustive enumeration of all sequences
    (independent of the solver: no state deduplication, no pruning)."""

    def solvable_within(lvl: Level, depth: int) -> bool:
        if lvl.is_solved:
            return True
        return depth > 0 and any(solvable_within(move(lvl, a).level, depth - 1) for a in ACTIONS)

    for length in range(limit + 1):
        if solvable_within(level, length):
            return length
    return None


def _solves(level: Level, moves) -> bool:
    return apply_moves(level, moves).is_solved


# --------------------------------------------------------------------------- XSB
def test_xsb_round_trip_and_accessors():
    level = Level.from_xsb(TWO_BOXES)
    assert str(level) == TWO_BOXES
    assert Level.from_xsb(str(level)) == level
    assert level.dim == (4, 6)
    assert level.player == (1, 1)
    assert level.boxes == {(1, 2), (2, 3)}
    assert level.targets == {(1, 4), (2, 4)}
    assert level.num_boxes == 2 and level.boxes_on_target == 0 and not level.is_solved
    assert level.completion == 0.0


def test_xsb_symbols_for_objects_on_targets():
    text = "#####\n#+*$#\n#   #\n#####"
    level = Level.from_xsb(text)
    assert level.player == (1, 1) and level.player in level.targets
    assert (1, 2) in level.boxes and (1, 2) in level.targets
    assert level.boxes_on_target == 1 and level.completion == 0.5
    assert str(level) == text


def test_xsb_tolerates_crlf_indentation_trailing_spaces_ragged_lines_and_floor_aliases():
    messy = "\r\n\n    #####   \r\n    #@$.#\r\n    #####\n\n"
    assert Level.from_xsb(messy) == Level.from_xsb(ONE_PUSH)
    # A ragged, irregular classic-style level: the spaces outside its walls are void, written back as spaces.
    irregular = "  ####\n###  #\n#@$. #\n######"
    level = Level.from_xsb(irregular)
    assert str(level) == irregular
    assert (0, 0) not in level.floor and (0, 0) not in level.walls
    assert Level.from_xsb("#####\n#@$.#\n#-_-#\n#####").floor == Level.from_xsb("#####\n#@$.#\n#   #\n#####").floor


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("#####\n# $.#\n#####", "exactly one player"),
        ("#####\n#@$.@#\n#####", "exactly one player"),
        ("#####\n#@$ #\n#####", "1 boxes but 0 targets"),
        ("#####\n#@ .#\n#####", "no boxes"),
        ("#####\n#@$.x#\n#####", "unknown character 'x' at row 1, column 4"),
        ("#######\n#@ #$.#\n#######", "walled off from the player"),
    ],
)
def test_xsb_validation_errors_are_clear(text, message):
    with pytest.raises(ValueError, match=message):
        Level.from_xsb(text)


def test_xsb_rejects_non_string():
    with pytest.raises(TypeError, match="must be a str"):
        Level.from_xsb(None)  # type: ignore[arg-type]


def test_parse_xsb_collection_splits_on_titles_and_comments():
    text = f"; my collection\nTitle: first\n{ONE_PUSH}\n\n; second\n{TWO_BOXES}\nAuthor: me\n"
    levels = parse_xsb_collection(text)
    assert [str(lvl) for lvl in levels] == [ONE_PUSH, TWO_BOXES]


# --------------------------------------------------------------------------- rules
def test_walk_push_and_bumps():
    level = Level.from_xsb(WALK_THEN_PUSH)
    bump = move(level, "Up")
    assert not bump.moved and bump.events == ("wall_bump",) and bump.level == level
    walked = move(level, "Right")
    assert walked.moved and not walked.pushed and walked.level.player == (1, 2) and walked.events == ()
    pushed = move(walked.level, "Down")
    assert pushed.pushed and pushed.level.boxes == {(3, 2)} and pushed.events == ("box_on_target", "solved")
    with pytest.raises(ValueError, match="Unknown Sokoban action 'up'"):
        move(level, "up")


def test_cannot_push_two_boxes_or_into_walls_and_never_pulls():
    level = Level.from_xsb(BLOCKED_CORRIDOR)
    first = move(level, "Right").level
    assert first.boxes == {(1, 3), (1, 4)}
    second = move(first, "Right")
    assert not second.moved and second.events == ("wall_bump",)  # box behind a box
    back = move(first, "Left")
    assert back.level.boxes == first.boxes and back.level.player == (1, 1)  # walking away never pulls
    wall = Level.from_xsb("#####\n#.@$#\n#####")
    assert move(wall, "Right").events == ("wall_bump",)


def test_box_sliding_from_target_to_target_reports_off_then_on():
    level = Level.from_xsb("######\n#@$..#\n#  $ #\n######")
    on = move(level, "Right")
    assert on.events == ("box_on_target",)
    slide = move(on.level, "Right")
    assert slide.events == ("box_off_target", "box_on_target")


def test_dead_corner_detection():
    level = Level.from_xsb(BOX_IN_CORNER.replace("@ $", "@$ "))
    result = move(level, "Right")
    assert result.events == ("box_in_dead_corner",)
    assert is_dead_corner(level, (1, 3)) and is_dead_corner(level, (2, 1)) is False  # (2, 1) is a target
    assert not is_dead_corner(level, (1, 2))  # wall above, but open left and right
    # A corner holding a target is where the box belongs: no dead-lock event.
    assert move(Level.from_xsb(ONE_PUSH), "Right").events == ("box_on_target", "solved")


# --------------------------------------------------------------------------- solver
@pytest.mark.parametrize("text, optimum", KNOWN_OPTIMA)
def test_solver_is_optimal_on_hand_made_levels(text, optimum):
    level = Level.from_xsb(text)
    solution = solve(level)
    assert len(solution) == optimum
    assert _solves(level, solution)
    assert _brute_force_shortest(level, optimum) == optimum  # nothing shorter exists


def test_solver_corner_solution_is_the_expected_route():
    assert solve(AROUND_CORNER) == ["Right", "Right", "Up", "Right", "Down", "Down", "Down"]


def test_solver_returns_empty_for_solved_and_none_for_unsolvable():
    assert solve("#####\n#@*#\n####") == []
    assert solve(BOX_IN_CORNER) is None  # dead square, pruned before the search
    assert solve(BLOCKED_CORRIDOR) is None  # needs the full search to exhaust
    assert _brute_force_shortest(Level.from_xsb(BLOCKED_CORRIDOR), 6) is None


def test_solver_state_guard_raises_a_clear_error():
    with pytest.raises(SolverLimitError, match="max_states=3"):
        solve(AROUND_CORNER, max_states=3)
    with pytest.raises(TypeError, match="Level or an XSB string"):
        solve(42)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- generator
@pytest.mark.parametrize("num_boxes", [1, 2])
def test_generated_levels_are_solvable_and_their_solution_wins_the_env(num_boxes):
    env = SokobanEnv(max_steps=100)
    for seed in range(30):
        level = generate_level(seed, (6, 6), num_boxes)
        assert level.num_boxes == num_boxes and level.dim == (6, 6)
        assert level.boxes_on_target == 0  # reverse play moved every box off its target
        assert level.solution is not None and len(level.solution) == len(solve(level))
        env.reset({"level": str(level)})
        result = env.step("<answer>" + " || ".join(level.solution) + "</answer>")
        assert result.done and result.stop_reason == "solved"
        score = env.score()
        assert score.success is True and score.completion == 1.0
        assert score.info["steps"] == len(level.solution)


def test_generated_short_levels_are_optimal_by_brute_force():
    for seed in range(8):
        level = generate_level(seed, (5, 5), 1, max_solution_length=4)
        assert 1 <= len(level.solution) <= 4
        assert _brute_force_shortest(level, len(level.solution)) == len(level.solution)


def test_generation_is_deterministic_and_seed_sensitive():
    a = [str(generate_level(s, (6, 6), 2)) for s in range(5)]
    b = [str(generate_level(s, (6, 6), 2)) for s in range(5)]
    assert a == b
    assert len(set(a)) == 5
    assert str(generate_level("abc")) == str(generate_level("abc")) != str(generate_level("abd"))


def test_generation_is_identical_across_processes_with_other_hash_seeds():
    code = (
        "from skill_sd_trl.envs.sokoban.generator import generate_level\n"
        "print('|'.join(str(generate_level(s, (6, 6), 2)) for s in range(3)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "|".join(str(generate_level(s, (6, 6), 2)) for s in range(3))


def test_generation_respects_length_bounds_and_rejects_bad_arguments():
    for seed in range(10):
        assert 6 <= len(generate_level(seed, (6, 6), 2, min_solution_length=6, max_solution_length=9).solution) <= 9
    with pytest.raises(ValueError, match="`dim` must be at least"):
        generate_level(0, (2, 6))
    with pytest.raises(ValueError, match="`num_boxes` must be >= 1"):
        generate_level(0, num_boxes=0)
    with pytest.raises(ValueError, match="too few for 5 box"):
        generate_level(0, (5, 5), 5)
    with pytest.raises(RuntimeError, match="Could not generate"):
        generate_level(0, (4, 4), 1, min_solution_length=30, max_attempts=5)
