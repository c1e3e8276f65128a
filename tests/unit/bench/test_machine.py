from __future__ import annotations

from pathlib import Path

import pytest
from bench import machine


def _parameters(tmp_path: Path, order: int, reported: int = 0) -> Path:
    (tmp_path / "page_reporting_order").write_text(f"{order}\n")
    (tmp_path / "reported_kib").write_text(f"{reported}\n")
    return tmp_path


def test_the_facts_say_whether_free_pages_are_reported(tmp_path: Path) -> None:
    on = machine.machine_facts(_parameters(tmp_path, 9))
    assert on.endswith("; free page reporting on (blocks of order 9)")
    off = machine.machine_facts(_parameters(tmp_path, 11))
    assert off.endswith("; free page reporting off (order 11)")
    assert "free page" not in machine.machine_facts(tmp_path / "absent")


def test_reporting_is_paused_inside_and_its_order_put_back_after(tmp_path: Path) -> None:
    parameters = _parameters(tmp_path, 9, reported=4096)
    assert machine.reported_kib(parameters) == 4096
    with machine.page_reporting_paused(parameters) as paused:
        assert paused
        assert (parameters / "page_reporting_order").read_text() == "11\n"
    assert (parameters / "page_reporting_order").read_text() == "9\n"


def test_the_order_is_put_back_when_the_block_fails(tmp_path: Path) -> None:
    parameters = _parameters(tmp_path, 7)
    with pytest.raises(KeyboardInterrupt), machine.page_reporting_paused(parameters):
        raise KeyboardInterrupt
    assert (parameters / "page_reporting_order").read_text() == "7\n"


def test_nothing_is_written_where_there_is_no_reporting_to_pause(tmp_path: Path) -> None:
    with machine.page_reporting_paused(tmp_path) as paused:
        assert not paused
    assert list(tmp_path.iterdir()) == []
    already_off = _parameters(tmp_path, 11)
    with machine.page_reporting_paused(already_off) as paused:
        assert not paused
    assert machine.reported_kib(tmp_path / "absent") is None


def test_a_run_says_how_reporting_stands_during_it(tmp_path: Path) -> None:
    parameters = _parameters(tmp_path, 9)
    with machine.page_reporting_for_the_run(True, parameters) as paused:
        assert paused == "free page reporting off (order 11)"
    with machine.page_reporting_for_the_run(False, parameters) as left:
        assert left == "free page reporting on (blocks of order 9)"
    with machine.page_reporting_for_the_run(True, tmp_path / "absent") as none:
        assert none == "no free page reporting"
