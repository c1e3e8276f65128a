"""A Physical drill's wait for its restored database: psql only once the server listens."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from stackforge_operator.backup.store import StoreConfig
from stackforge_operator.devcluster.ports import free_port
from stackforge_operator.drill.await_server import server_listens
from stackforge_operator.drill.runner import DrillRequest, PhysicalRecovery, run_drill


@pytest.fixture
def listener() -> Iterator[int]:
    """A port that accepts connections and closes them at once."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            connection.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def test_a_listening_port_is_told_from_a_closed_one(listener: int) -> None:
    assert server_listens({"PGHOST": "127.0.0.1", "PGPORT": str(listener)})
    assert not server_listens({"PGHOST": "127.0.0.1", "PGPORT": str(free_port())})


@pytest.mark.parametrize("env", [
    {}, {"PGHOST": "/var/run/postgresql"}, {"PGHOST": "a,b"},
    {"PGHOST": "127.0.0.1", "PGPORT": "not-a-port"},
])
def test_what_is_not_one_tcp_address_is_left_to_psql(env: dict[str, str]) -> None:
    assert server_listens(env)


def _counting_psql(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in psql that answers --version and fails every query as refused,
    counting the queries."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "psql-calls"
    bin_dir.mkdir()
    psql = bin_dir / "psql"
    psql.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "psql (PostgreSQL) 15.10"; exit 0; fi\n'
        f'echo query >> "{calls}"\n'
        'echo "psql: error: connection refused" >&2\n'
        "exit 2\n")
    psql.chmod(0o755)
    return bin_dir, calls


def _drill(bin_dir: Path, port: int, wait_seconds: float,
           started_at: datetime | None = None) -> list[str]:
    """Run a Physical drill against 127.0.0.1:port; the names of its failed checks.
    Its report goes to an S3 endpoint where nothing listens: that failure is
    not what these tests look at. ``started_at``: the run's start (default: now)."""
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{free_port()}",
                          region_name="us-east-1", aws_access_key_id="k",
                          aws_secret_access_key="s",
                          config=Config(retries={"max_attempts": 1}, connect_timeout=1))
    outcome = run_drill(
        DrillRequest(tenant="restored", store=StoreConfig(bucket="reports"),
                     started_at=started_at,
                     recovery=PhysicalRecovery("/repo", wait_seconds=wait_seconds),
                     pg_bin_dir=bin_dir),
        env={"PGHOST": "127.0.0.1", "PGPORT": str(port), "PATH": "/usr/bin:/bin"},
        client=client)
    return [check.name for check in outcome.checks if not check.passed]


def test_while_nothing_listens_psql_is_asked_only_at_the_deadline(tmp_path: Path) -> None:
    bin_dir, calls = _counting_psql(tmp_path)
    assert _drill(bin_dir, free_port(), wait_seconds=1.0) == ["connectivity"]
    # Five polls a second for a second, and one query: the last, whose
    # failure is the check's message.
    assert calls.read_text().splitlines() == ["query"]


def test_once_the_server_listens_psql_is_asked_at_the_polls_pace(
        tmp_path: Path, listener: int) -> None:
    bin_dir, calls = _counting_psql(tmp_path)
    assert _drill(bin_dir, listener, wait_seconds=1.0) == ["connectivity"]
    assert len(calls.read_text().splitlines()) >= 4


# A Physical drill run in a fresh interpreter: whether boto3 was loaded by the
# time its verdict was in, and what became of its report.
_PHYSICAL_RUN = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from stackforge_operator.backup.store import StoreConfig
    from stackforge_operator.drill.runner import DrillRequest, PhysicalRecovery, run_drill
    bin_dir, port, endpoint, report = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    outcome = run_drill(
        DrillRequest(tenant="restored", store=StoreConfig(bucket="reports", endpoint=endpoint),
                     recovery=PhysicalRecovery("/repo", wait_seconds=0.5),
                     pg_bin_dir=Path(bin_dir), write_report=report == "report"),
        env={"PGHOST": "127.0.0.1", "PGPORT": port, "PATH": "/usr/bin:/bin"})
    print(json.dumps({"boto3": "boto3" in sys.modules, "verdict": outcome.grade.verdict.value,
                      "report_error": outcome.report_error}))
""")


def _physical_run(tmp_path: Path, endpoint: str, report: bool) -> dict[str, object]:
    bin_dir, _ = _counting_psql(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", _PHYSICAL_RUN, str(bin_dir), str(free_port()), endpoint,
         "report" if report else "none"],
        capture_output=True, text=True, timeout=60, check=True)
    found: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return found


def test_a_physical_drills_runner_loads_no_s3_client_before_its_report(tmp_path: Path) -> None:
    # boto3 and a client are about 0.4 s of CPU, which the runner's start would
    # take from the restore it starts beside: only the report needs them.
    found = _physical_run(tmp_path, f"http://127.0.0.1:{free_port()}", report=False)
    assert found == {"boto3": False, "verdict": "Failed", "report_error": None}


def test_a_client_botocore_refuses_to_make_is_the_reports_error_not_a_crash(
        tmp_path: Path) -> None:
    found = _physical_run(tmp_path, "not a url", report=True)
    assert found["verdict"] == "Failed"
    assert found["report_error"] == "InvalidStorage: Invalid endpoint: not a url"


def test_the_wait_is_counted_from_the_runs_start(tmp_path: Path, listener: int) -> None:
    """The launcher spent part of the wait before the runner started: what is left
    is the run's, not a fresh wait (which kept a runner past its Job's deadline)."""
    bin_dir, calls = _counting_psql(tmp_path)
    # The run started 30 s ago with 30.5 s to wait: half a second is left.
    started = datetime.now(UTC) - timedelta(seconds=30)
    began = time.monotonic()
    assert _drill(bin_dir, listener, wait_seconds=30.5, started_at=started) == ["connectivity"]
    assert time.monotonic() - began < 10, "waited afresh instead of what was left"
    assert 1 <= len(calls.read_text().splitlines()) <= 6
