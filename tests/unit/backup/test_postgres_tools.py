"""How every PostgreSQL client is started (backup.postgres.start_tool): real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stackforge_operator.backup.failures import BackupFailure
from stackforge_operator.backup.postgres import SnapshotSession, start_tool


def test_a_missing_tool_fails_as_tool_missing_naming_it(tmp_path: Path) -> None:
    with pytest.raises(BackupFailure) as failed:
        start_tool([f"{tmp_path}/pg_dump"], os.environ, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL)
    assert failed.value.reason == "ToolMissing"
    assert "starting pg_dump:" in str(failed.value)


def test_stderr_is_drained_and_only_its_tail_kept() -> None:
    # Far more than a pipe buffer of stderr: an undrained pipe would stall the child.
    script = "import sys\nfor i in range(20000): print('line', i, file=sys.stderr)\nsys.exit(3)"
    proc, tail = start_tool([sys.executable, "-c", script], os.environ,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, keep=2)
    assert proc.wait(timeout=30) == 3
    assert tail.text() == "line 19998\nline 19999"


def test_the_environment_given_is_the_one_the_tool_sees() -> None:
    proc, tail = start_tool(
        [sys.executable, "-c", "import os; print(os.environ['PGAPPNAME'])"],
        {**os.environ, "PGAPPNAME": "stackforge-backup/psql"},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=30)
    assert out.decode().strip() == "stackforge-backup/psql"
    assert tail.text() == ""


def test_an_abandoned_snapshot_session_ends_at_once() -> None:
    """After a failure the session is killed, not asked to COMMIT: psql reads the
    COMMIT only once a row count still running ends, and close() waited up to
    30 s for it, the kubelet's whole grace period, before the upload was aborted."""
    session = SnapshotSession("psql", {}, 1000)
    busy = subprocess.Popen(["sleep", "600"], stdin=subprocess.PIPE)  # psql mid-count
    session._proc = busy
    started = time.monotonic()
    session.abandon()
    assert time.monotonic() - started < 5
    assert busy.poll() is not None
    session.abandon()  # twice is nothing
