"""How many CPU cores this process may run on (its affinity mask where the OS has one: a container's or
a batch job's share, not the machine's), and how many of them are idle right now."""

from __future__ import annotations

import os
import time

__all__ = ["usable_cores", "idle_cores"]


def usable_cores() -> int:
    """The cores this process may use (at least 1)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _cpu_times(cpus: set[int]) -> tuple[int, int]:
    """(idle, total) clock ticks so far of `cpus`, from /proc/stat (Linux)."""
    idle = total = 0
    with open("/proc/stat") as fh:
        for line in fh:
            name, *values = line.split()
            if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
                continue
            ticks = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
            idle += ticks[3] + ticks[4]
            total += sum(ticks)
    return idle, total


def _process_ticks(pids) -> int:
    """User + system clock ticks so far of the processes `pids` (those that have ended count 0)."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return ticks


def idle_cores(seconds: float = 0.1, ours=()) -> float | None:
    """How many of this process's usable cores were idle over the next `seconds` (their idle share of the
    time, summed; this process should itself be idle meanwhile), or None where /proc/stat is unavailable.
    ours: process ids whose CPU time counts as idle (this run's own helpers, about to wait for it)."""
    try:
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
        idle0, total0 = _cpu_times(cpus)
        own0 = _process_ticks(ours)
        time.sleep(seconds)
        idle1, total1 = _cpu_times(cpus)
        own1 = _process_ticks(ours)
    except (OSError, ValueError):
        return None
    if total1 <= total0:
        return None
    return min(len(cpus), len(cpus) * (idle1 - idle0 + own1 - own0) / (total1 - total0))
