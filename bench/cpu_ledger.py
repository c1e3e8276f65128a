"""Where the machine's CPU went while one thing was measured.

Two snapshots of /proc: the whole machine's busy time (/proc/stat) and each
live process's own user + system time by its command name. Their difference
says which programs ran beside the measured one. A process that started and
exited between the snapshots is not seen by name (a `kubectl`, a probe's
`runc`): its CPU shows only in the machine's total, as "not seen by name".
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Snapshot:
    busy_seconds: float
    # (pid, start time) -> (command name, CPU seconds): a pid reused by
    # another process between the snapshots is another key.
    processes: dict[tuple[int, int], tuple[str, float]]


def machine_busy_seconds(stat_text: str) -> float:
    """CPU time of every core that was neither idle nor waiting for I/O."""
    fields = stat_text.splitlines()[0].split()[1:]
    ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICKS


def process_times(stat_line: str) -> tuple[str, int, float]:
    """(command name, start time in ticks, user + system seconds) of one /proc/<pid>/stat."""
    name = stat_line[stat_line.index("(") + 1:stat_line.rindex(")")]
    rest = stat_line[stat_line.rindex(")") + 2:].split()
    # After the name: state is field 3, utime 14, stime 15, starttime 22.
    utime, stime, start = int(rest[11]), int(rest[12]), int(rest[19])
    return name, start, (utime + stime) / _TICKS


def snapshot(proc: Path = Path("/proc")) -> Snapshot:
    processes: dict[tuple[int, int], tuple[str, float]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name, start, seconds = process_times((entry / "stat").read_text())
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue  # gone meanwhile
        processes[(int(entry.name), start)] = (name, seconds)
    return Snapshot(machine_busy_seconds((proc / "stat").read_text()), processes)


@dataclass(frozen=True)
class Ledger:
    busy_seconds: float
    by_name: Counter[str]

    @property
    def unseen_seconds(self) -> float:
        return max(0.0, self.busy_seconds - sum(self.by_name.values()))

    def summary(self, top: int = 8) -> str:
        parts = [f"{name} {seconds:.1f}" for name, seconds in self.by_name.most_common(top)
                 if seconds >= 0.05]
        return (f"machine busy {self.busy_seconds:.1f} CPU-s: " + ", ".join(parts)
                + f"; not seen by name {self.unseen_seconds:.1f}")


def between(before: Snapshot, after: Snapshot) -> Ledger:
    by_name: Counter[str] = Counter()
    for key, (name, seconds) in after.processes.items():
        earlier = before.processes.get(key)
        # Counter takes float counts (most_common only orders them); typeshed types them int.
        by_name[name] += seconds - (earlier[1] if earlier else 0.0)  # type: ignore[assignment]
    return Ledger(after.busy_seconds - before.busy_seconds, by_name)
