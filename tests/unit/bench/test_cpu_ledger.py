from __future__ import annotations

import os
import time
from pathlib import Path

from bench import cpu_ledger

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(name: str, utime: int, stime: int, start: int) -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
    # cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime ...
    return (f"42 ({name}) S 1 42 42 0 -1 4194560 10 0 0 0 {utime} {stime} 7 7 20 0 1 0 "
            f"{start} 1000 100 18446744073709551615")


def test_a_processs_times_are_its_own_user_and_system_ticks() -> None:
    # A name with spaces and a parenthesis, as comm may have.
    assert cpu_ledger.process_times(_stat("pg (wal) x", 3 * TICKS, TICKS, 555)) == (
        "pg (wal) x", 555, 4.0)


def test_the_machine_is_busy_for_all_but_idle_and_iowait() -> None:
    text = f"cpu  {TICKS} 0 {TICKS} {9 * TICKS} {5 * TICKS} 0 0 0 0 0\ncpu0 1 2 3\n"
    assert cpu_ledger.machine_busy_seconds(text) == 2.0


def test_a_ledger_counts_what_each_program_spent_between_the_snapshots() -> None:
    before = cpu_ledger.Snapshot(10.0, {(1, 100): ("pgbackrest", 1.0),
                                        (2, 100): ("postgres", 5.0),
                                        (3, 100): ("gone", 2.0)})
    # pid 2 is another process now (another start time); pid 4 is new.
    after = cpu_ledger.Snapshot(16.0, {(1, 100): ("pgbackrest", 3.5),
                                       (2, 900): ("kubectl", 0.5),
                                       (4, 950): ("postgres", 1.0)})
    ledger = cpu_ledger.between(before, after)
    assert ledger.by_name == {"pgbackrest": 2.5, "postgres": 1.0, "kubectl": 0.5}
    assert ledger.busy_seconds == 6.0
    assert ledger.unseen_seconds == 2.0
    assert ledger.summary(top=2) == (
        "machine busy 6.0 CPU-s: pgbackrest 2.5, postgres 1.0; not seen by name 2.0")


def test_this_process_burning_cpu_shows_in_a_real_snapshot() -> None:
    before = cpu_ledger.snapshot()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    ledger = cpu_ledger.between(before, cpu_ledger.snapshot())
    own = Path("/proc/self/stat").read_text()
    name = own[own.index("(") + 1:own.rindex(")")]
    assert ledger.by_name[name] >= 0.25
    assert ledger.busy_seconds >= 0.25
