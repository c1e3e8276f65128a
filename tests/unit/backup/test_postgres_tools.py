"""How every PostgreSQL client is started (backup.postgres.start_tool): real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stackforge_operator.backup.failures import BackupFailure
from stackforge_operator.backup.postgres import start_tool


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
