"""Where a test run's time went: per pytest worker, and per part of the suite.

With `-n 2` one worker runs the host-global chain (the real node's tests, in
order) while the other runs everything else; the run takes as long as the
longer of the two. The summary says which one that was, what each part of the
suite cost and which modules were the longest, so that a slow CI run points at
what to shorten (issue #13).
"""

from __future__ import annotations

import contextlib
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A file every test process appends one line to per kubectl call ("wall cpu",
# seconds), named by the main process for its workers (they inherit its
# environment). Each call starts the multi-call control-plane binary, whose
# start alone costs about 0.1 CPU-second on this machine (a CI run of 1e0654d
# made 942 calls: about 129 CPU-seconds, docs/realnode.md).
KUBECTL_TALLY_ENV = "STACKFORGE_TEST_KUBECTL_TALLY"


def module_of(nodeid: str) -> str:
    """The test module's path of a test id."""
    return nodeid.split("::", 1)[0]


def part_of(nodeid: str) -> str:
    """The suite's part a test belongs to: its directory under tests/ (tests/unit,
    tests/realnode, ...), or the module for a test at the top of tests/."""
    path = module_of(nodeid)
    parts = path.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else path


@dataclass
class _Spent:
    """Seconds spent by one worker, part or module, and who spent them (test ids,
    or workers)."""

    seconds: float = 0.0
    by: set[str] = field(default_factory=set)

    def add(self, seconds: float, name: str) -> None:
        self.seconds += seconds
        self.by.add(name)


def summary(reports: Iterable[Any], longest_modules: int = 12) -> list[str]:
    """Lines of seconds spent (setup, call and teardown) per worker and per part,
    then the ``longest_modules`` longest modules with the workers that ran them.

    ``reports``: pytest's test reports (what `terminalreporter.stats` holds);
    anything without a ``when`` and a ``duration`` is not one and is skipped. A
    report forwarded by an xdist worker names it (``report.node.gateway.id``);
    without xdist everything ran in "main".
    """
    per_worker: dict[str, _Spent] = defaultdict(_Spent)
    per_part: dict[str, _Spent] = defaultdict(_Spent)
    per_module: dict[str, _Spent] = defaultdict(_Spent)
    for report in reports:
        when, duration = getattr(report, "when", None), getattr(report, "duration", None)
        if when not in ("setup", "call", "teardown") or not isinstance(duration, float):
            continue
        node = getattr(report, "node", None)
        worker = str(getattr(getattr(node, "gateway", None), "id", "main"))
        per_worker[worker].add(duration, report.nodeid)
        per_part[part_of(report.nodeid)].add(duration, report.nodeid)
        per_module[module_of(report.nodeid)].add(duration, worker)

    def longest_first(spent: dict[str, _Spent]) -> list[tuple[str, _Spent]]:
        return sorted(spent.items(), key=lambda item: -item[1].seconds)

    lines = [f"{worker}: {spent.seconds:,.0f} s in {len(spent.by)} tests"
             for worker, spent in sorted(per_worker.items())]
    lines += [f"{part}: {spent.seconds:,.0f} s in {len(spent.by)} tests"
              for part, spent in longest_first(per_part)]
    lines += [f"  {module}: {spent.seconds:,.0f} s ({', '.join(sorted(spent.by))})"
              for module, spent in longest_first(per_module)[:longest_modules]]
    return lines


def note_kubectl(wall: float, cpu: float) -> None:
    """Count one kubectl call, if the run keeps a tally (:data:`KUBECTL_TALLY_ENV`)."""
    tally = os.environ.get(KUBECTL_TALLY_ENV)
    if tally:
        # One short write in append mode: lines from both workers never interleave.
        # A tally is no reason to fail a test.
        with contextlib.suppress(OSError), Path(tally).open("a", encoding="ascii") as out:
            out.write(f"{wall:.3f} {cpu:.3f}\n")


def kubectl_summary(tally: Path) -> str | None:
    """One line: how many kubectl calls the run made and what they cost; None
    without a tally."""
    if not tally.exists():
        return None
    rows = [line.split() for line in tally.read_text(encoding="ascii").splitlines() if line]
    wall = sum(float(row[0]) for row in rows)
    cpu = sum(float(row[1]) for row in rows)
    return (f"kubectl: {len(rows)} calls, {wall:,.0f} s waited on, "
            f"about {cpu:,.0f} CPU-seconds")
