"""A PostgreSQL "pod" on the host: the directories the pod would mount, in a fresh
temporary tree, and the image's programs (images/postgres/) run in it as they
run in the pod: not as root (as the ``postgres`` system user when the tests run
as root), with the host's PostgreSQL 15 (the image's major)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from stackforge_operator.builders.postgres import PG_HBA, SERVER_ARGS
from stackforge_operator.devcluster.ports import free_port
from tests.support.postgres_server import PgUser
from tests.support.signals import default_stop_signals

IMAGE_DIR = Path(__file__).resolve().parents[2] / "images" / "postgres"
ENTRYPOINT = IMAGE_DIR / "docker-entrypoint.sh"
# The image COPYs this directory to /docker-entrypoint-initdb.d.
IMAGE_INIT_SCRIPTS = IMAGE_DIR / "initdb.d"
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


def chown_tree(root: Path, user: PgUser) -> None:
    for path in [root, *root.rglob("*")]:
        os.chown(path, user.uid, user.gid)


def make_pod() -> Iterator[Pod]:
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
    for script in IMAGE_INIT_SCRIPTS.iterdir():
        pod.add_init_file(script.name, script.read_text(), 0o755)
    chown_tree(root, user)
    yield pod
    shutil.rmtree(root, ignore_errors=True)


class Server:
    def __init__(self, pod: Pod, env: Mapping[str, str], extra_args: Sequence[str] = ()) -> None:
        self.pod = pod
        self.log_path = pod.root / f"entrypoint-{time.monotonic_ns()}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(  # type: ignore[call-overload]
                [str(ENTRYPOINT), *pod.server_args(), *extra_args],
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


def server_list() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


@pytest.fixture
def pod() -> Iterator[Pod]:
    """A PostgreSQL pod's tree on the host (registered by tests/images and tests/backup)."""
    yield from make_pod()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """The entrypoints a test starts in ``pod``, stopped at its end (before the pod goes)."""
    yield from server_list()


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




def program(name: str) -> Path:
    """One of the image's programs (images/<image>/<name>.sh), run from the checkout."""
    return IMAGE_DIR.parent / name


def run_program(pod: Pod, path: Path, env: Mapping[str, str], *args: str, check: bool = False,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a program of the image to its end, as the pod's user."""
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [str(path), *args], env=dict(env), capture_output=True, text=True, check=check,
        timeout=timeout,
        **pod.user.popen_kwargs(),
    )  # fmt: skip


def start_program(pod: Pod, path: Path, env: Mapping[str, str],
                  log: Path) -> subprocess.Popen[bytes]:
    """Start a long-running program of the image (a sidecar), as the pod's user."""
    with log.open("wb") as out:
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            [str(path)], env=dict(env), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True, **pod.user.popen_kwargs(),
        )  # fmt: skip


class FirstProcess:
    """A program of the image started as its container starts it: the first
    process of a PID namespace (``unshare --pid``), as the pod's user. There a
    signal without a handler is ignored, unlike anywhere else on the host."""

    def __init__(self, pod: Pod, argv: Sequence[str], env: Mapping[str, str],
                 log: Path) -> None:
        if os.geteuid() != 0:
            pytest.fail("a PID namespace needs root (unshare --pid): run the tests as root")
        with log.open("wb") as out:
            self.launcher = subprocess.Popen(
                ["unshare", "--pid", "--fork", "--kill-child", "setpriv",
                 f"--reuid={pod.user.uid}", f"--regid={pod.user.gid}", "--clear-groups",
                 *argv], env=dict(env), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
                # A container's first process starts with default dispositions.
                preexec_fn=default_stop_signals)

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the namespace's first process, as the kubelet does."""
        pid = self.launcher.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        assert len(children) == 1, children
        os.kill(int(children[0]), signum)

    def end(self) -> None:
        if self.launcher.poll() is None:
            os.killpg(self.launcher.pid, signal.SIGKILL)
            self.launcher.wait()
