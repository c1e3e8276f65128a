from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench import machine


def _parameters(tmp_path: Path, order: int, reported: int = 0) -> Path:
    (tmp_path / "page_reporting_order").write_text(f"{order}\n")
    (tmp_path / "reported_kib").write_text(f"{reported}\n")
    return tmp_path


def _record(tmp_path: Path) -> Path:
    # Beside the fake parameters, never the real /run.
    return tmp_path / "run" / "page-reporting-order"


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_facts_say_whether_free_pages_are_reported(tmp_path: Path) -> None:
    on = machine.machine_facts(_parameters(tmp_path, 9))
    assert on.endswith("; free page reporting on (blocks of order 9)")
    off = machine.machine_facts(_parameters(tmp_path, 11))
    assert off.endswith("; free page reporting off (order 11)")
    assert "free page" not in machine.machine_facts(tmp_path / "absent")


def test_reporting_is_paused_inside_and_its_order_put_back_after(tmp_path: Path) -> None:
    parameters = _parameters(tmp_path, 9, reported=4096)
    assert machine.reported_kib(parameters) == 4096
    record = _record(tmp_path)
    with machine.page_reporting_paused(parameters, record) as paused:
        assert paused
        assert (parameters / "page_reporting_order").read_text() == "11\n"
        # What a killed run would leave for the next one: the order and this run.
        assert record.read_text() == f"9 {os.getpid()}\n"
    assert (parameters / "page_reporting_order").read_text() == "9\n"
    assert not record.exists()


def test_the_order_is_put_back_when_the_block_fails(tmp_path: Path) -> None:
    parameters = _parameters(tmp_path, 7)
    with pytest.raises(KeyboardInterrupt), machine.page_reporting_paused(
            parameters, _record(tmp_path)):
        raise KeyboardInterrupt
    assert (parameters / "page_reporting_order").read_text() == "7\n"
    assert not _record(tmp_path).exists()


def test_a_killed_runs_order_is_put_back_by_the_next_run(tmp_path: Path) -> None:
    # A run paused order 9 and was killed: 11 stays set, its record stays.
    parameters = _parameters(tmp_path, 11)
    record = _record(tmp_path)
    record.parent.mkdir()
    record.write_text(f"9 {_dead_pid()}\n")
    with machine.page_reporting_for_the_run(False, parameters, record) as state:
        assert state == "free page reporting on (blocks of order 9)"
    assert not record.exists()
    # And a run that pauses again pauses the order put back, not the 11 it found.
    (parameters / "page_reporting_order").write_text("11\n")
    record.write_text(f"9 {_dead_pid()}\n")
    with machine.page_reporting_paused(parameters, record) as paused:
        assert paused
        assert record.read_text().startswith("9 ")
    assert (parameters / "page_reporting_order").read_text() == "9\n"


def test_a_running_benchs_record_is_left_to_it(tmp_path: Path) -> None:
    parameters = _parameters(tmp_path, 11)
    record = _record(tmp_path)
    record.parent.mkdir()
    record.write_text("9 1\n")  # pid 1 is always alive
    assert machine.put_back_a_dead_runs_order(parameters, record) is None
    assert (parameters / "page_reporting_order").read_text() == "11\n"
    assert record.exists()


def test_a_record_this_module_did_not_write_is_dropped_untrusted(tmp_path: Path) -> None:
    parameters = _parameters(tmp_path, 11)
    record = _record(tmp_path)
    record.parent.mkdir()
    record.write_text("rm -rf /\n")
    assert machine.put_back_a_dead_runs_order(parameters, record) is None
    assert (parameters / "page_reporting_order").read_text() == "11\n"
    assert not record.exists()


def test_nothing_is_written_where_there_is_no_reporting_to_pause(tmp_path: Path) -> None:
    with machine.page_reporting_paused(tmp_path, _record(tmp_path)) as paused:
        assert not paused
    assert list(tmp_path.iterdir()) == []
    already_off = _parameters(tmp_path, 11)
    with machine.page_reporting_paused(already_off, _record(tmp_path)) as paused:
        assert not paused
    assert not _record(tmp_path).exists()
    assert machine.reported_kib(tmp_path / "absent") is None


def test_a_run_says_how_reporting_stands_during_it(tmp_path: Path) -> None:
    parameters = _parameters(tmp_path, 9)
    record = _record(tmp_path)
    with machine.page_reporting_for_the_run(True, parameters, record) as paused:
        assert paused == "free page reporting off (order 11)"
    with machine.page_reporting_for_the_run(False, parameters, record) as left:
        assert left == "free page reporting on (blocks of order 9)"
    with machine.page_reporting_for_the_run(True, tmp_path / "absent", record) as none:
        assert none == "no free page reporting"
