"""Fixtures for anything that backs up or restores: a real PostgreSQL and a real S3 server.

Register them in a conftest with::

    from tests.support.fixtures_backup import (  # noqa: F401
        pg_database, postgres_server, s3_bucket, s3_server, seeded_database,
    )

Both servers are started once per session and stopped at its end; teardown
fails the session if any of their processes survived.  When PostgreSQL or
moto_server is missing the fixtures fail: ``.ci/run`` installs both, and a
skipped backup test would prove nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stackforge_operator.devcluster.processes import pid_alive, processes_mentioning
from tests.support import postgres_server as pg
from tests.support import s3_server as s3


def _missing(what: str) -> None:
    # Required, not optional: a skipped backup test would prove nothing.
    pytest.fail(f"{what}; .ci/run installs it")



@pytest.fixture(scope="session")
def postgres_server() -> Iterator[pg.PostgresServer]:
    """A PostgreSQL server from Debian's packages for the whole session."""
    if not pg.available():
        _missing("PostgreSQL server binaries not found (apt-get install postgresql)")
    server = pg.PostgresServer()
    server.start()
    pid = server.pid
    try:
        yield server
    finally:
        server.stop()
        leftovers = ([pid] if pid and pid_alive(pid) else []) + processes_mentioning(
            str(server.root)
        )
        if leftovers:
            raise RuntimeError(f"PostgreSQL processes survived teardown: {leftovers}")


@contextlib.contextmanager
def running_s3_server(*, tls: bool = False) -> Iterator[s3.S3Server]:
    """moto's standalone S3 server (over HTTPS with a CA of its own when ``tls``), with
    IAM authentication enforced; stopped afterwards, failing if its process survives."""
    if not s3.available():
        _missing("moto_server not found (pip install 'moto[server]')")
    server = s3.S3Server(tls=tls)
    server.start()
    pid = server.pid
    try:
        yield server
    finally:
        server.stop()
        if pid and pid_alive(pid):
            raise RuntimeError(f"moto_server (pid {pid}) survived teardown")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[s3.S3Server]:
    """moto's standalone S3 server over HTTP, with IAM authentication enforced."""
    with running_s3_server() as server:
        yield server


@pytest.fixture
def pg_database(postgres_server: pg.PostgresServer) -> Iterator[str]:
    """An empty database of its own for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    postgres_server.create_database(name)
    try:
        yield name
    finally:
        postgres_server.drop_database(name)


@dataclass(frozen=True)
class SeededDatabase:
    name: str
    row_counts: dict[str, int]


@pytest.fixture
def seeded_database(postgres_server: pg.PostgresServer, pg_database: str) -> SeededDatabase:
    """``pg_database`` with a few tables of every common shape, and their row counts."""
    return SeededDatabase(pg_database, pg.seed_small(postgres_server, pg_database))


@pytest.fixture
def s3_bucket(s3_server: s3.S3Server) -> str:
    """A fresh, empty bucket for one test."""
    return s3_server.create_bucket()


# ---------------------------------------------------------------------- the runner as a Job's pod


@dataclass
class RunnerProcess:
    """The outcome of ``stackforge-operator backup run`` run as a child process."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    peak_rss_bytes: int  # the runner's own peak (VmHWM)
    children_peak_bytes: int = 0  # the largest of its children's (pg_dump, psql)
    children_argv: list[list[str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def result(self) -> dict[str, Any]:
        """The single JSON line the runner prints on stdout."""
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one JSON line on stdout, got: {self.stdout!r}"
        data: dict[str, Any] = json.loads(lines[0])
        return data


def runner_argv(
    *,
    tenant: str,
    bucket: str,
    endpoint: str,
    region: str = s3.REGION,
    prefix: str = "stackforge",
    run_id: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    argv = [
        sys.executable, "-m", "stackforge_operator.backup.cli",
        "--tenant", tenant, "--bucket", bucket, "--prefix", prefix,
        "--endpoint", endpoint, "--region", region, "--force-path-style",
    ]
    if run_id:
        argv += ["--run-id", run_id]
    return argv + list(extra)


def _descendants(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (FileNotFoundError, ProcessLookupError):
        return []
    found = [int(c) for c in children]
    for child in list(found):
        found += _descendants(child)
    return found


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part] or None


def run_runner(
    argv: list[str],
    env: Mapping[str, str],
    *,
    timeout: float = 600.0,
    while_running: Callable[[int], None] | None = None,
) -> RunnerProcess:
    """Run the runner to completion, recording its children's argv as a kubelet could see them.

    ``while_running(pid)`` is called from a thread while the runner runs
    (e.g. to kill the database connection mid-dump).
    """
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env), text=True
    )
    seen: dict[int, list[str]] = {}
    done = threading.Event()

    def watch() -> None:
        # Samples /proc until the runner exits: every child it started shows
        # up here with the argument list any user of `ps` would see.
        while not done.is_set():
            for child in _descendants(proc.pid):
                if child not in seen and (cmd := _cmdline(child)):
                    seen[child] = cmd
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    helper = None
    if while_running is not None:
        helper = threading.Thread(target=while_running, args=(proc.pid,), daemon=True)
        helper.start()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        raise
    finally:
        done.set()
        watcher.join(5)
        if helper is not None:
            helper.join(30)
    # Popen reaped the child already; its rusage is gone with it, so the peak
    # RSS comes from the runner's own report (ru_maxrss, RUSAGE_SELF).
    peak = 0
    with contextlib.suppress(ValueError, IndexError):
        peak = int(json.loads(stdout.strip().splitlines()[-1]).get("peakRssBytes", 0))
    return RunnerProcess(
        argv=argv, returncode=proc.returncode, stdout=stdout, stderr=stderr,
        peak_rss_bytes=peak, children_argv=list(seen.values()),
        seconds=time.monotonic() - started,
    )


def vm_hwm(pid: int) -> int:
    """A process's peak resident memory so far (kernel's VmHWM), in bytes; 0 once gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def run_runner_measured(
    argv: list[str], env: Mapping[str, str], *, timeout: float = 1800.0
) -> RunnerProcess:
    """Run the runner and measure its own peak RSS from outside.

    VmHWM is the kernel's high-water mark of the process's own memory, reset at
    exec. (wait4's ru_maxrss is not: Linux carries the parent's peak into a
    child across fork and exec, so it would report the test runner's memory.)
    Children (pg_dump, psql) are measured separately, in ``children_peak_bytes``.
    """
    started = time.monotonic()
    out_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"runner-{uuid.uuid4().hex}"
    runner_peak = 0
    children_peak: dict[int, int] = {}
    with out_path.with_suffix(".out").open("w+") as out, out_path.with_suffix(
        ".err"
    ).open("w+") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=dict(env))
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            runner_peak = max(runner_peak, vm_hwm(proc.pid))
            for child in _descendants(proc.pid):
                children_peak[child] = max(children_peak.get(child, 0), vm_hwm(child))
            if time.monotonic() > deadline:
                proc.kill()
                raise TimeoutError(f"runner did not finish in {timeout}s")
            time.sleep(0.02)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    out_path.with_suffix(".out").unlink()
    out_path.with_suffix(".err").unlink()
    result = RunnerProcess(
        argv=argv, returncode=proc.returncode, stdout=stdout, stderr=stderr,
        peak_rss_bytes=runner_peak, seconds=time.monotonic() - started,
    )
    result.children_peak_bytes = max(children_peak.values(), default=0)
    return result


def recording_pg_bin_dir(postgres: pg.PostgresServer, tmp_path: Path) -> tuple[Path, Path]:
    """A --pg-bin-dir whose clients write their argv to a file each, then exec the real
    one: (the directory, where the records go). Short-lived children are seen for
    sure, not only when a sample of /proc happens to catch them."""
    shims, invocations = tmp_path / "pg-bin", tmp_path / "invocations"
    shims.mkdir()
    invocations.mkdir()
    for name in ("pg_dump", "psql", "pg_restore"):
        shim = shims / name
        shim.write_text(
            "#!/bin/sh\n"
            f"printf '%s\\0' \"$0\" \"$@\" > '{invocations}/{name}.'$$\n"
            f"exec '{postgres.bin(name)}' \"$@\"\n")
        shim.chmod(0o755)
    return shims, invocations


def recorded_invocations(invocations: Path) -> list[list[str]]:
    """The argv of every client run through :func:`recording_pg_bin_dir`'s shims."""
    return [[arg.decode() for arg in path.read_bytes().split(b"\0")[:-1]]
            for path in sorted(invocations.iterdir())]
