"""The run's time per worker and per part of the suite (tests/support/durations.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support.durations import (
    KUBECTL_TALLY_ENV,
    kubectl_summary,
    note_kubectl,
    part_of,
    summary,
)


def report(nodeid: str, when: str, duration: float, worker: str | None) -> SimpleNamespace:
    node = SimpleNamespace(gateway=SimpleNamespace(id=worker)) if worker else None
    return SimpleNamespace(nodeid=nodeid, when=when, duration=duration, node=node)


def test_parts_are_directories_under_tests_or_top_level_modules() -> None:
    assert part_of("tests/unit/builders/test_kong.py::test_x") == "tests/unit"
    assert part_of("tests/realnode/test_pods.py::test_y[a/b]") == "tests/realnode"
    assert part_of("tests/test_layout.py::test_z") == "tests/test_layout.py"


def test_seconds_are_summed_per_worker_and_per_part_over_every_phase() -> None:
    reports = [
        report("tests/realnode/test_a.py::t1", "setup", 40.0, "gw0"),
        report("tests/realnode/test_a.py::t1", "call", 20.0, "gw0"),
        report("tests/realnode/test_a.py::t1", "teardown", 1.0, "gw0"),
        report("tests/unit/test_b.py::t2", "call", 0.5, "gw1"),
        report("tests/unit/test_b.py::t3", "call", 1.5, "gw1"),
        "a warning, not a report",
        SimpleNamespace(nodeid="tests/unit/test_b.py", when=None, duration=9.0),  # collection
    ]
    assert summary(reports) == [
        "gw0: 61 s in 1 tests",
        "gw1: 2 s in 2 tests",
        "tests/realnode: 61 s in 1 tests",
        "tests/unit: 2 s in 2 tests",
        "  tests/realnode/test_a.py: 61 s (gw0)",
        "  tests/unit/test_b.py: 2 s (gw1)",
    ]


def test_only_the_longest_modules_are_listed_with_every_worker_that_ran_them() -> None:
    reports = [report(f"tests/realnode/test_{n}.py::t", "call", float(n), f"gw{n % 2}")
               for n in range(1, 6)]
    reports.append(report("tests/realnode/test_5.py::u", "call", 1.0, "gw0"))
    lines = summary(reports, longest_modules=2)
    assert lines[-2:] == ["  tests/realnode/test_5.py: 6 s (gw0, gw1)",
                          "  tests/realnode/test_4.py: 4 s (gw0)"]


def test_without_workers_everything_ran_in_main() -> None:
    assert summary([report("tests/unit/test_b.py::t", "call", 2.0, None)])[0] == \
        "main: 2 s in 1 tests"
    assert summary([]) == []


def test_kubectl_calls_are_tallied_only_where_the_run_keeps_a_tally(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tally = tmp_path / "calls"
    monkeypatch.delenv(KUBECTL_TALLY_ENV, raising=False)
    note_kubectl(1.0, 0.1)
    assert kubectl_summary(tally) is None
    monkeypatch.setenv(KUBECTL_TALLY_ENV, str(tally))
    note_kubectl(1.5, 0.12)
    note_kubectl(0.5, 0.10)
    assert kubectl_summary(tally) == "kubectl: 2 calls, 2 s waited on, about 0 CPU-seconds"
