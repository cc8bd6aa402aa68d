"""Process inspection for tests that check nothing is left running (Linux /proc)."""

import os


def _stat_fields(pid) -> list[str]:
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()  # after "(comm)": state, ppid, ...


def children(pid: int, include_zombies: bool = False) -> set[int]:
    """The direct children of ``pid`` (zombies only when asked: an unreaped child is a leak too)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = _stat_fields(entry)
            except OSError:
                continue
            if int(fields[1]) == pid and (include_zombies or fields[0] != "Z"):
                found.add(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        return _stat_fields(pid)[0] != "Z"
    except OSError:
        return False
