"""The PostgreSQL image's archiving programs, run from the checkout with stand-ins for
the tools they call (pgBackRest and psql themselves run in tests/backup/
test_pgbackrest_s3.py and, in the pod, tests/realnode/test_archiving.py):

- ``stackforge-pgbackrest`` runs pgBackRest in the repository of the database's
  incarnation, and refuses to run without one;
- ``stackforge-archiver`` retries the stanza until it exists, then writes a
  heartbeat record every HEARTBEAT_SECONDS, and ends at once on TERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.images.postgres_pods import program

WRAPPER = program("postgres/stackforge-pgbackrest.sh")
ARCHIVER = program("postgres/stackforge-archiver.sh")


def _tool(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    # pgBackRest's stand-in says where it would work and what it was asked.
    _tool(directory, "pgbackrest", 'echo "repo1-path=$PGBACKREST_REPO1_PATH args=$*"\n')
    return directory


def _wrapper(bin_dir: Path, incarnation_file: Path, *args: str,
             base: str = "/sf/_pgbackrest/acme/") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WRAPPER), *args], capture_output=True, text=True, timeout=30, check=False,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "STACKFORGE_REPOSITORY_BASE": base,
             "STACKFORGE_INCARNATION_FILE": str(incarnation_file)})


def test_the_wrapper_works_in_the_incarnations_repository(bin_dir: Path, tmp_path: Path) -> None:
    incarnation = tmp_path / "stackforge-incarnation"
    incarnation.write_text("7412345678901234567-20261130T120000Z\n")
    ran = _wrapper(bin_dir, incarnation, "archive-push", "pg_wal/000000010000000000000001")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == (
        "repo1-path=/sf/_pgbackrest/acme/7412345678901234567-20261130T120000Z "
        "args=archive-push pg_wal/000000010000000000000001")


@pytest.mark.parametrize("content", ["", "../other-tenant", "a/b", "x y"])
def test_the_wrapper_refuses_an_incarnation_that_is_no_name(
        bin_dir: Path, tmp_path: Path, content: str) -> None:
    incarnation = tmp_path / "stackforge-incarnation"
    incarnation.write_text(content)
    ran = _wrapper(bin_dir, incarnation, "info")
    assert ran.returncode == 1 and "repo1-path" not in ran.stdout
    assert "holds no incarnation name" in ran.stderr


def test_the_wrapper_refuses_to_run_without_an_incarnation(bin_dir: Path,
                                                          tmp_path: Path) -> None:
    ran = _wrapper(bin_dir, tmp_path / "missing", "archive-push", "x")
    assert ran.returncode == 1 and ran.stdout == ""
    assert "no incarnation file" in ran.stderr and "entrypoint" in ran.stderr


def test_the_archiver_retries_the_stanza_then_beats_and_ends_on_term(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    # The stanza fails once (S3 not reachable yet), then exists.
    _tool(bin_dir, "stackforge-pgbackrest",
          f'echo "pgbackrest $*" >>{calls}\n'
          f'[ -e {tmp_path}/tried ] || {{ touch {tmp_path}/tried; exit 1; }}\n')
    _tool(bin_dir, "psql", f'echo "psql $*" >>{calls}\n')
    log = tmp_path / "archiver.log"
    with log.open("wb") as out:
        archiver = subprocess.Popen(
            [str(ARCHIVER)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "PGBACKREST_STANZA": "acme",
                 "RETRY_SECONDS": "1", "HEARTBEAT_SECONDS": "1"})
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            lines = calls.read_text().splitlines() if calls.exists() else []
            if sum(line.startswith("psql") for line in lines) >= 2:
                break
            time.sleep(0.2)
        lines = calls.read_text().splitlines()
        assert lines[:2] == ["pgbackrest stanza-create", "pgbackrest stanza-create"], lines
        beats = [line for line in lines[2:] if line.startswith("psql")]
        assert len(beats) >= 2 and all("pg_logical_emit_message" in b for b in beats), lines
        started = time.monotonic()
        os.kill(archiver.pid, signal.SIGTERM)
        assert archiver.wait(10) == 0
        assert time.monotonic() - started < 5
    finally:
        if archiver.poll() is None:
            os.killpg(archiver.pid, signal.SIGKILL)
    printed = log.read_text()
    assert "retrying in 1s" in printed and "stanza acme is ready" in printed
    assert "heartbeat every 1s" in printed
