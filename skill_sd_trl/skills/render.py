"""Trajectories as text for a summarizer prompt, within a character budget.

Two layouts: :func:`render_trajectories` shows a task's group of episodes side by side (group summaries);
:func:`render_focus` shows the one episode a per-trajectory skill describes, clearly marked, then other episodes of
the task marked as contrast.

A long episode is cut in the middle, not at the end: the beginning shows how the agent approached the task and
the end shows how it finished (or failed), which is what a summary needs. The cut is explicit
(``[... 12 turns elided ...]``) so the summarizer does not mistake a gap for consecutive turns.
"""

from __future__ import annotations

from collections.abc import Sequence

from .trajectory import Trajectory, Turn

MIN_TURN_CHARS = 120  # below this a turn block is useless; the budget then drops whole turns instead


def _clip(text: str, limit: int) -> str:
    """Keep the head and tail of ``text`` within ``limit`` characters, marking the cut."""
    text = str(text)
    if len(text) <= limit:
        return text
    marker = f" [... {len(text) - limit} chars cut ...] "
    if limit <= len(marker) + 2:
        return text[: max(limit, 0)]
    keep = limit - len(marker)
    head = (keep + 1) // 2
    return text[:head] + marker + text[len(text) - (keep - head):]


def _turn_actions(turn: Turn) -> list[str]:
    actions = turn.info.get("actions") if isinstance(turn.info, dict) else None
    if isinstance(actions, list):
        return [str(a) for a in actions]
    return []


def _turn_block(index: int, turn: Turn, limit: int) -> str:
    lines = [f"Turn {index}{'' if turn.valid else ' (INVALID)'}:"]
    lines.append(f"  Action: {turn.action.strip()}")
    actions = _turn_actions(turn)
    if actions:
        lines.append(f"  Applied actions: {', '.join(actions)}")
    events = turn.info.get("events") if isinstance(turn.info, dict) else None
    if events:
        lines.append(f"  Events: {', '.join(str(e) for e in events)}")
    observation = turn.observation.strip()
    # A board or a stack trace keeps its layout: multi-line observations start on their own line.
    lines.append(f"  Observation:\n{observation}" if "\n" in observation else f"  Observation: {observation}")
    return _clip("\n".join(lines), limit)


def outcome_line(traj: Trajectory) -> str:
    return (
        f"Outcome: {'SOLVED' if traj.success else 'NOT SOLVED'} | reward {traj.reward:.3f} | "
        f"completion {traj.completion:.0%} | {len(traj.turns)} turns | stop reason: {traj.stop_reason}"
    )


def _fit_turns(blocks: list[str], budget: int) -> list[str]:
    """Keep as many blocks as fit, alternating from the start and the end; mark the elided middle."""
    total = sum(len(b) + 1 for b in blocks)
    if total <= budget:
        return blocks
    n = len(blocks)
    marker_room = len(f"[... {n} turns elided ...]") + 1
    head: list[str] = []
    tail: list[str] = []
    used = marker_room
    lo, hi = 0, n - 1
    take_head = True
    while lo <= hi:
        block = blocks[lo] if take_head else blocks[hi]
        if used + len(block) + 1 > budget:
            break
        used += len(block) + 1
        if take_head:
            head.append(block)
            lo += 1
        else:
            tail.append(block)
            hi -= 1
        take_head = not take_head
    elided = hi - lo + 1
    middle = [f"[... {elided} turns elided ...]"] if elided else []
    return head + middle + tail[::-1]


def render_trajectory(traj: Trajectory, max_chars: int = 6000, *, include_task: bool = True) -> str:
    """The task, every turn (action, applied actions, events, observation) and the outcome, in ``max_chars``.

    When the episode is too long, whole turns are dropped from the middle and replaced by a marker saying how
    many were elided; a single oversized turn is clipped in its middle. The task is clipped to a third of the
    budget so it cannot crowd out the turns.
    """
    if max_chars < 200:
        raise ValueError(f"max_chars={max_chars} is too small to render a trajectory; use at least 200")
    header = []
    if include_task:
        header.append(f"Task ({traj.env_name}, id {traj.task_id}):\n{_clip(traj.task.strip(), max_chars // 3)}")
    footer = outcome_line(traj)
    budget = max_chars - sum(len(h) + 1 for h in header) - len(footer) - 1
    per_turn = max(MIN_TURN_CHARS, budget // 2)  # a single turn may take at most half the room
    blocks = [_turn_block(i + 1, t, per_turn) for i, t in enumerate(traj.turns)] or ["(no turns)"]
    body = _fit_turns(blocks, budget)
    text = "\n".join(header + body + [footer])
    return _clip(text, max_chars)  # last resort: guarantees the budget whatever the inputs


def order_for_summary(trajectories: Sequence[Trajectory], max_trajectories: int) -> list[Trajectory]:
    """Best and worst episodes first: contrast is what a summary learns from.

    Sorted by reward; when there are too many, keep the top half from the best and the rest from the worst.
    """
    ranked = sorted(trajectories, key=lambda t: (t.success, t.reward), reverse=True)
    if len(ranked) <= max_trajectories:
        return ranked
    n_best = (max_trajectories + 1) // 2
    n_worst = max_trajectories - n_best
    return ranked[:n_best] + (ranked[len(ranked) - n_worst:] if n_worst else [])


def render_trajectories(trajectories: Sequence[Trajectory], max_chars: int = 12000, max_trajectories: int = 4) -> str:
    """Several episodes of one task, each with an equal share of the budget; the task is stated once by the
    prompt, so it is not repeated per episode."""
    if not trajectories:
        raise ValueError("render_trajectories needs at least one trajectory")
    chosen = order_for_summary(trajectories, max_trajectories)
    share = max(200, max_chars // len(chosen) - 40)
    parts = []
    for k, traj in enumerate(chosen, 1):
        parts.append(f"=== Episode {k} of {len(chosen)} ===\n" + render_trajectory(traj, share, include_task=False))
    return "\n\n".join(parts)


FOCUS_HEADER = "=== EPISODE TO SUMMARIZE (the skill describes this episode) ==="
CONTRAST_HEADER = "=== Contrast episode {k} of {m} (another attempt at the same task, for comparison only) ==="


def _contrast_share(max_chars: int, m: int) -> int:
    """Characters for each of ``m`` contrast episodes: they share the half of the budget the focus does not keep."""
    header = len(CONTRAST_HEADER.format(k=m, m=m)) + 1
    return (max_chars - max_chars // 2) // m - header - 2  # 2: the blank line between blocks


def contrast_shown(contrast: Sequence[Trajectory], max_chars: int = 12000, max_trajectories: int = 4) -> list[Trajectory]:
    """The contrast episodes :func:`render_focus` shows: up to ``max_trajectories - 1`` (best and worst first), fewer
    when each would get less than 200 characters of the budget."""
    if max_trajectories <= 1:
        return []
    shown = order_for_summary(list(contrast), max_trajectories - 1)
    m = len(shown)
    while m and _contrast_share(max_chars, m) < 200:
        m -= 1
    return order_for_summary(list(contrast), m) if m else []


def render_focus(
    focus: Trajectory, contrast: Sequence[Trajectory], max_chars: int = 12000, max_trajectories: int = 4
) -> str:
    """The episode a per-trajectory skill describes, then the contrast episodes of :func:`contrast_shown` (``focus``
    itself, if it is among ``contrast``, is left out by identity), all within ``max_chars``.

    The focus comes first, under its own header, with at least half the budget (all of it without contrast); the
    contrast episodes share the rest equally, each under a header that marks it as contrast. Contrast episodes that
    would get less than 200 characters are left out rather than overrunning the budget.
    """
    if max_chars < 600:
        raise ValueError(f"max_chars={max_chars} is too small to render a focus episode; use at least 600")
    shown = contrast_shown([t for t in contrast if t is not focus], max_chars, max_trajectories)
    parts = []
    if shown:
        share = _contrast_share(max_chars, len(shown))
        for k, traj in enumerate(shown, 1):
            header = CONTRAST_HEADER.format(k=k, m=len(shown))
            parts.append(header + "\n" + render_trajectory(traj, share, include_task=False))
    focus_chars = max_chars - sum(len(p) + 2 for p in parts) - len(FOCUS_HEADER) - 1
    return "\n\n".join([FOCUS_HEADER + "\n" + render_trajectory(focus, focus_chars, include_task=False)] + parts)
