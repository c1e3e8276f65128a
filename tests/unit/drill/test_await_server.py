"""drill/await_server.py: a physical drill's runner starts once the restored server
listens, with nothing of the runner's loaded before."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from stackforge_operator.devcluster.ports import free_port
from stackforge_operator.drill import await_server

PROGRAM = [sys.executable, "-m", "stackforge_operator.drill.await_server"]
# Prints when it ran: the command await_server becomes.
STAMP = [sys.executable, "-c", "import sys, time; print(time.monotonic()); print(sys.argv[1:])"]


def _env(port: int) -> dict[str, str]:
    return {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(port)}


def _listen_after(port: int, seconds: float) -> threading.Event:
    """A listener on ``port`` from ``seconds`` on, until the returned event is set."""
    done = threading.Event()

    def serve() -> None:
        time.sleep(seconds)
        with socket.create_server(("127.0.0.1", port)) as server:
            server.settimeout(0.1)
            while not done.is_set():
                try:
                    server.accept()[0].close()
                except TimeoutError:
                    continue

    threading.Thread(target=serve, daemon=True).start()
    return done


def test_the_command_runs_once_the_server_listens_with_its_arguments() -> None:
    port = free_port()
    done = _listen_after(port, 1.5)
    try:
        started = time.monotonic()
        ran = subprocess.run([*PROGRAM, "30", *STAMP, "drill", "run"], env=_env(port),
                             capture_output=True, text=True, timeout=60, check=True)
    finally:
        done.set()
    stamp, argv = ran.stdout.splitlines()
    assert float(stamp) - started >= 1.5
    assert argv == "['drill', 'run']"


def test_a_server_that_never_listens_still_gets_the_command_after_the_wait() -> None:
    # The runner reports what it finds: waiting here is never a failure of its own.
    started = time.monotonic()
    ran = subprocess.run([*PROGRAM, "1", *STAMP], env=_env(free_port()),
                         capture_output=True, text=True, timeout=60, check=True)
    assert float(ran.stdout.splitlines()[0]) - started >= 1.0


def test_bad_arguments_are_told_with_the_usage() -> None:
    for wrong in ([], ["soon", "true"], ["5"]):
        ran = subprocess.run([*PROGRAM, *wrong], capture_output=True, text=True, timeout=60,
                             check=False)
        assert ran.returncode == 2
        assert "usage:" in ran.stderr


def test_it_loads_nothing_of_the_runner(tmp_path: Path) -> None:
    # The runner's start is what it defers: boto3, botocore, pydantic, the models.
    probe = tmp_path / "probe.py"
    probe.write_text("import sys\nimport stackforge_operator.drill.await_server\n"
                     "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                     "{'boto3', 'botocore', 'pydantic'} or m.startswith("
                     "'stackforge_operator.models')))\n")
    ran = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True,
                         timeout=60, check=True)
    assert ran.stdout.strip() == "[]"


def test_a_port_that_listens_is_awaited_no_longer() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        env = {"PGHOST": "127.0.0.1", "PGPORT": str(server.getsockname()[1])}
        started = time.monotonic()
        assert await_server.await_listening(env, 30)
        assert time.monotonic() - started < 1
    assert not await_server.await_listening({"PGHOST": "127.0.0.1",
                                             "PGPORT": str(free_port())}, 0.3,
                                            poll_seconds=0.05)
