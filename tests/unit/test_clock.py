"""The suspend windows' clock: the real one, or the time a test wrote in its file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stackforge_operator import clock


def test_the_real_time_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STACKFORGE_TEST_CLOCK_FILE", raising=False)
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)


def test_the_files_time_while_it_holds_one(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    path = tmp_path / "now"
    monkeypatch.setenv("STACKFORGE_TEST_CLOCK_FILE", str(path))
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)  # no file yet
    path.write_text("2026-12-04T19:00:00+00:00\n")
    assert clock.now() == datetime(2026, 12, 4, 19, tzinfo=UTC)
    path.write_text("2026-12-05T08:00:00+01:00")
    assert clock.now() == datetime(2026, 12, 5, 7, tzinfo=UTC)
    path.write_text("")
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)
