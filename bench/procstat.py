"""CPU and memory of a process tree, read from /proc (Linux only)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Memory:
    rss_kb: int
    hwm_kb: int


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces and parentheses: split after the last ")".
    return text[text.rindex(")") + 2 :].split()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        tasks = list(task_dir.iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def tree_cpu_seconds(pid: int) -> float:
    """User+system CPU of pid, its reaped children (cutime/cstime) and its live descendants.

    Reaped children matter: spamass-milter runs one spamc per message and waits for it.
    """
    total_ticks = 0
    stack = [pid]
    root = True
    while stack:
        current = stack.pop()
        try:
            fields = _stat_fields(current)
        except (OSError, ValueError):
            continue
        # Fields after the name start at stat field 3; utime is 14, cstime is 17.
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        total_ticks += utime + stime
        if root:
            total_ticks += cutime + cstime
            root = False
        stack.extend(_children(current))
    return total_ticks / _TICK


def memory(pid: int) -> Memory:
    """VmRSS and VmHWM (peak RSS) of one process, in KiB."""
    values = {"VmRSS": 0, "VmHWM": 0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in values:
            values[name] = int(rest.split()[0])
    return Memory(rss_kb=values["VmRSS"], hwm_kb=values["VmHWM"])


def tree_rss_kb(pid: int) -> int:
    """Sum of VmRSS over pid and its live descendants (shared pages counted twice)."""
    total = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            total += memory(current).rss_kb
        except (OSError, ValueError):
            continue
        stack.extend(_children(current))
    return total
