"""How many CPU cores this process may run on (its affinity mask where the OS has one: a container's or
a batch job's share, not the machine's), and how many of them are idle right now."""

from __future__ import annotations

import os
import time

__all__ = ["usable_cores", "idle_cores", "IdleMeter"]


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


def _children_ticks() -> int:
    """User + system clock ticks so far of this process's children that have ended and been waited for."""
    import resource  # (Unix; called only where /proc/stat was read)

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return round((usage.ru_utime + usage.ru_stime) * os.sysconf("SC_CLK_TCK"))


class IdleMeter:
    """How many of this process's usable cores are idle, measured from when the meter is made to when it is
    read: the clock ticks of this process, of the processes `ours` (this run's helpers) and of the children
    this process waits for meanwhile count as idle, since that work gives way to what is decided on the
    answer (the fit). So a meter can run while this process loads a model and reads keypoints, and reading
    it then waits only for what the window lacks of its minimum length (`read(seconds)`)."""

    def __init__(self, ours=()):
        self.ours = list(ours)
        self.started = time.monotonic()
        try:
            self.cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
            self._before = (*_cpu_times(self.cpus), self._own_ticks())
        except (OSError, ValueError):
            self._before = None

    def _own_ticks(self) -> int:
        return _process_ticks([os.getpid(), *self.ours]) + _children_ticks()

    def read(self, seconds: float = 0.1) -> float | None:
        """Idle cores over the window so far, made at least `seconds` long; None where /proc/stat is
        unavailable."""
        if self._before is None:
            return None
        time.sleep(max(0.0, seconds - (time.monotonic() - self.started)))
        try:
            idle1, total1 = _cpu_times(self.cpus)
            own1 = self._own_ticks()
        except (OSError, ValueError):
            return None
        idle0, total0, own0 = self._before
        if total1 <= total0:
            return None
        return max(0.0, min(len(self.cpus), len(self.cpus) * (idle1 - idle0 + own1 - own0) / (total1 - total0)))


def idle_cores(seconds: float = 0.1, ours=()) -> float | None:
    """How many of this process's usable cores are idle over the next `seconds` (their idle share of the
    time, summed), or None where /proc/stat is unavailable. ours: process ids whose CPU time counts as idle
    (this run's own helpers, about to wait for it; IdleMeter)."""
    return IdleMeter(ours).read(seconds)
