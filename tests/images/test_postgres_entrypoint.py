"""images/postgres/docker-entrypoint.sh, run for real on the host's PostgreSQL 15.

The script runs as it does in the pod: not as root (as the ``postgres`` system
user when the tests run as root), with the operator's own init script, pg_hba
and server arguments (builders/postgres.py), and with the data, socket, init
and temporary directories of a fresh temporary tree instead of the pod's
volumes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from stackforge_operator.builders.postgres import INIT_SCRIPT, INIT_SH, PG_HBA, SERVER_ARGS
from stackforge_operator.devcluster.cluster import free_port
from tests.support.postgres_server import PgUser

ENTRYPOINT = Path(__file__).resolve().parents[2] / "images" / "postgres" / "docker-entrypoint.sh"
# The image ships PostgreSQL 15 (Debian bookworm's only major version).
PG15_BIN = Path("/usr/lib/postgresql/15/bin")
SUPERUSER_PASSWORD = "super 'secret\" $x"  # quotes and a dollar: nothing may expand it
APP_PASSWORD = "app-password"


@dataclass
class Pod:
    """The directories the pod would mount, in a tree the server's user owns."""

    root: Path
    user: PgUser
    port: int

    @property
    def data_dir(self) -> Path:
        return self.root / "data"  # the volume's mount point

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def initdb_dir(self) -> Path:
        return self.root / "initdb"

    @property
    def hba_file(self) -> Path:
        return self.root / "config" / "pg_hba.conf"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": f"{PG15_BIN}:/usr/bin:/bin",
            "TMPDIR": str(self.root / "tmp"),
            "PGDATA": str(self.pgdata),
            "POSTGRES_SOCKET_DIR": str(self.run_dir),
            "POSTGRES_INITDB_DIR": str(self.initdb_dir),
            "POSTGRES_USER": "postgres",
            "POSTGRES_PASSWORD": SUPERUSER_PASSWORD,
            "POSTGRES_DB": "shop",
            "APP_USER": "shop_app",
            "APP_PASSWORD": APP_PASSWORD,
            "REPLICATION_USER": "replicator",
            "REPLICATION_PASSWORD": "replication-password",
            "LANG": "C.UTF-8",
            **extra,
        }

    def server_args(self) -> list[str]:
        """The StatefulSet's arguments (``postgres -c ...``), with this tree's paths."""
        args = [
            f"hba_file={self.hba_file}" if arg.startswith("hba_file=") else arg
            for arg in SERVER_ARGS
        ]
        return [
            *args,
            "-c", f"port={self.port}",
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={self.run_dir}",
            "-c", "fsync=off",
        ]  # fmt: skip

    def add_init_file(self, name: str, text: str, mode: int = 0o644) -> None:
        path = self.initdb_dir / name
        path.write_text(text)
        path.chmod(mode)


def _chown_tree(root: Path, user: PgUser) -> None:
    for path in [root, *root.rglob("*")]:
        os.chown(path, user.uid, user.gid)


@pytest.fixture
def pod() -> Iterator[Pod]:
    if not (PG15_BIN / "postgres").exists():
        pytest.fail(f"PostgreSQL 15 is needed at {PG15_BIN}: apt-get install postgresql-15")
    user = PgUser.for_server()
    # Not pytest's tmp_path: it is private to root, and the server runs as another user.
    root = Path(tempfile.mkdtemp(prefix="sf-entrypoint-"))
    pod = Pod(root, user, free_port())
    for directory in (pod.data_dir, pod.run_dir, pod.initdb_dir, pod.hba_file.parent,
                      root / "tmp"):
        directory.mkdir(parents=True)
    pod.hba_file.write_text(PG_HBA)
    # The ConfigMap volume's mode: executable, so the entrypoint runs it.
    pod.add_init_file(INIT_SCRIPT, INIT_SH, 0o555)
    _chown_tree(root, user)
    yield pod
    shutil.rmtree(root, ignore_errors=True)


class Server:
    def __init__(self, pod: Pod, env: Mapping[str, str]) -> None:
        self.pod = pod
        self.log_path = pod.root / f"entrypoint-{time.monotonic_ns()}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(  # type: ignore[call-overload]
                [str(ENTRYPOINT), *pod.server_args()],
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **pod.user.popen_kwargs(),
            )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the entrypoint exited early:\n{self.log}")
            ready = subprocess.run(
                [str(PG15_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.pod.port)],
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"the server was not ready in {timeout}s:\n{self.log}")

    def wait_exit(self, timeout: float = 60) -> int:
        return int(self.process.wait(timeout))

    def stop(self) -> None:
        if self.process.poll() is None:
            # The image's STOPSIGNAL: a fast shutdown.
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def start(pod: Pod, servers: list[Server], **extra_env: str) -> Server:
    server = Server(pod, pod.env(**extra_env))
    servers.append(server)
    return server


def query(pod: Pod, sql: str, *, user: str, password: str, database: str) -> str:
    """Over TCP with a password: the way the operator's clients log in."""
    out = subprocess.run(
        [str(PG15_BIN / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
         "-h", "127.0.0.1", "-p", str(pod.port), "-U", user, "-d", database, "-c", sql],
        env={"PGPASSWORD": password, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def test_first_start_initialises_and_a_restart_keeps_the_data(
    pod: Pod, servers: list[Server]
) -> None:
    marker = pod.root / "tmp" / "executable-ran"
    pod.add_init_file("20-executable.sh", f"#!/bin/sh\nset -eu\ntouch {marker}\n", 0o755)
    # Not executable: sourced, so it sees the entrypoint's shell and its psql login.
    pod.add_init_file(
        "30-sourced.sh",
        'psql -v ON_ERROR_STOP=1 --set=v="$POSTGRES_DB" -c "CREATE TABLE sourced (v text)"\n',
    )
    pod.add_init_file("40-schema.sql", "CREATE TABLE from_sql (id int);\n"
                      "INSERT INTO from_sql VALUES (7);\n")
    pod.add_init_file("50-ignored.txt", "not a script")
    _chown_tree(pod.initdb_dir, pod.user)

    first = start(pod, servers)
    first.wait_ready()

    # The operator's init script ran: the application role logs in with its
    # password and owns the database it was given.
    owner = query(pod, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop'",
                  user="shop_app", password=APP_PASSWORD, database="shop")
    assert owner == "shop_app"
    assert query(pod, "SELECT 1", user="postgres", password=SUPERUSER_PASSWORD,
                 database="postgres") == "1"
    assert marker.exists()
    tables = query(pod, "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables "
                   "WHERE schemaname = 'public'", user="shop_app", password=APP_PASSWORD,
                   database="shop")
    assert tables == "from_sql,sourced"
    assert "ignoring" in first.log and "50-ignored.txt" in first.log
    assert oct(pod.pgdata.stat().st_mode & 0o777) == oct(0o700)
    assert not Path(f"{pod.pgdata}.init").exists()
    # The temporary server left nothing behind in TMPDIR (password file, hba).
    assert sorted(p.name for p in (pod.root / "tmp").iterdir()) == ["executable-ran"]

    first.stop()
    marker.unlink()
    # A recursive fsGroup chown leaves the directory group-writable: repaired at start.
    pod.pgdata.chmod(0o770)
    second = start(pod, servers)
    second.wait_ready()
    assert "initialising" not in second.log
    assert not marker.exists()
    assert query(pod, "SELECT id FROM from_sql", user="postgres", password=SUPERUSER_PASSWORD,
                 database="shop") == "7"
    assert oct(pod.pgdata.stat().st_mode & 0o777) == oct(0o700)


def test_a_failed_initialisation_is_retried_from_scratch(
    pod: Pod, servers: list[Server]
) -> None:
    pod.add_init_file("20-fails.sql", "SELECT no_such_function();\n")
    _chown_tree(pod.initdb_dir, pod.user)
    failed = start(pod, servers)
    assert failed.wait_exit() != 0
    # Nothing that a restart could take for an initialised cluster.
    assert not (pod.pgdata / "PG_VERSION").exists()
    assert "no_such_function" in failed.log
    # And no temporary server left running.
    assert not Path(f"{pod.pgdata}.init", "postmaster.pid").exists()

    (pod.initdb_dir / "20-fails.sql").unlink()
    retried = start(pod, servers)
    retried.wait_ready()
    assert "initialisation complete" in retried.log
    assert query(pod, "SELECT current_user", user="shop_app", password=APP_PASSWORD,
                 database="shop") == "shop_app"


def test_initialisation_needs_a_password(pod: Pod, servers: list[Server]) -> None:
    server = start(pod, servers, POSTGRES_PASSWORD="")
    assert server.wait_exit() != 0
    assert "POSTGRES_PASSWORD must be set" in server.log
    assert not pod.pgdata.exists()


def test_a_foreign_non_empty_data_directory_is_refused(
    pod: Pod, servers: list[Server]
) -> None:
    pod.pgdata.mkdir()
    (pod.pgdata / "something").write_text("not a cluster")
    _chown_tree(pod.data_dir, pod.user)
    server = start(pod, servers)
    assert server.wait_exit() != 0
    assert "neither empty nor a PostgreSQL data directory" in server.log
    assert (pod.pgdata / "something").exists()


def run_entrypoint(pod: Pod, *argv: str) -> subprocess.CompletedProcess[str]:
    as_root = os.geteuid() == 0
    return subprocess.run(
        [str(ENTRYPOINT), *argv], env=pod.env(), capture_output=True, text=True, check=True,
        user=pod.user.uid if as_root else None, group=pod.user.gid if as_root else None,
        extra_groups=[] if as_root else None,
    )  # fmt: skip


def test_other_commands_and_help_run_without_initialising(pod: Pod) -> None:
    assert run_entrypoint(pod, "id", "-u").stdout.strip() == str(pod.user.uid)
    assert "(PostgreSQL) 15." in run_entrypoint(pod, "postgres", "--version").stdout
    # A first argument that is an option means the server, as in the community image.
    assert "(PostgreSQL) 15." in run_entrypoint(pod, "--version").stdout
    assert not pod.pgdata.exists()
