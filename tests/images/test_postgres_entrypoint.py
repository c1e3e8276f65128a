"""images/postgres/docker-entrypoint.sh, run for real on the host's PostgreSQL 15.

The script runs as it does in the pod: not as root (as the ``postgres`` system
user when the tests run as root), with the image's own init script
(``initdb.d/10-stackforge-roles.sh``), the operator's pg_hba and server
arguments (builders/postgres.py), and with the data, socket, init and temporary
directories of a fresh temporary tree instead of the pod's volumes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from stackforge_operator.builders.postgres import ANSWERS_ON_TCP
from tests.images.postgres_pods import (
    APP_PASSWORD,
    ENTRYPOINT,
    PG15_BIN,
    SUPERUSER_PASSWORD,
    FirstProcess,
    Pod,
    Server,
    chown_tree,
    query,
    start,
)


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
    chown_tree(pod.initdb_dir, pod.user)

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
    # The incarnation its WAL is archived under: the system identifier and a time.
    incarnation = (pod.pgdata / "stackforge-incarnation").read_text().strip()
    system_id = query(pod, "SELECT system_identifier FROM pg_control_system()", user="postgres",
                      password=SUPERUSER_PASSWORD, database="postgres")
    assert re.fullmatch(rf"{system_id}-\d{{8}}T\d{{6}}Z", incarnation), incarnation
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
    # Named once: a restart archives where the first start did.
    assert (pod.pgdata / "stackforge-incarnation").read_text().strip() == incarnation


def probe_passes(command: list[str], port: int) -> bool:
    """The readiness probe's command, run on the host against the pod's port."""
    argv = [str(PG15_BIN / command[0]),
            *(f"--port={port}" if arg.startswith("--port=") else arg for arg in command[1:])]
    return subprocess.run(argv, check=False, capture_output=True).returncode == 0


def test_the_readiness_probe_fails_while_init_scripts_run(
    pod: Pod, servers: list[Server]
) -> None:
    # Init scripts run under a temporary, socket-only server; a client let in
    # then (a drill's pg_restore) is refused once it stops. A DR drill failed
    # that way while the scratch database's probe asked the socket.
    release = pod.root / "tmp" / "release"
    waiting = pod.root / "tmp" / "waiting"
    pod.add_init_file("20-wait.sh", f"#!/bin/sh\ntouch {waiting}\n"
                      f"while [ ! -e {release} ]; do sleep 0.1; done\n", 0o755)
    chown_tree(pod.initdb_dir, pod.user)
    server = start(pod, servers)
    deadline = time.monotonic() + 60
    while not waiting.exists():
        assert time.monotonic() < deadline and server.process.poll() is None, server.log
        time.sleep(0.1)

    # The temporary server keeps the default port, as in the pod.
    socket_probe = ["pg_isready", f"--host={pod.run_dir}", "--port=5432"]
    assert probe_passes(socket_probe, 5432), "the temporary server should be up"
    assert not probe_passes(ANSWERS_ON_TCP, pod.port)

    release.touch()
    server.wait_ready()
    assert probe_passes(ANSWERS_ON_TCP, pod.port)


def test_a_failed_initialisation_is_retried_from_scratch(
    pod: Pod, servers: list[Server]
) -> None:
    pod.add_init_file("20-fails.sql", "SELECT no_such_function();\n")
    chown_tree(pod.initdb_dir, pod.user)
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


def test_an_unfinished_restore_is_never_initialised_over(
    pod: Pod, servers: list[Server]
) -> None:
    """A clone deleted mid-restore and made again (a retry, a GitOps sync) starts
    without the restore's settings: an empty database was initialised beside the
    half-restored one and served as the clone."""
    partial = Path(f"{pod.pgdata}.restore")
    partial.mkdir(parents=True)
    (partial / "base").mkdir()
    chown_tree(pod.data_dir, pod.user)
    server = start(pod, servers)
    assert server.wait_exit() != 0
    assert f"an unfinished restore is on this volume ({partial})" in server.log
    assert not (pod.pgdata / "PG_VERSION").exists() and (partial / "base").exists()
    # Its way out, as the message says: the leftover gone, a new database.
    subprocess.run(["rm", "-rf", str(partial)], check=True)
    started = start(pod, servers)
    started.wait_ready()
    assert "initialisation complete" in started.log


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
    chown_tree(pod.data_dir, pod.user)
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


def test_the_stop_signal_during_initialisation_ends_it_and_the_next_start_begins_anew(
    pod: Pod, servers: list[Server]
) -> None:
    """The first process of its container ignored the stop signal while it
    initialised (or restored) the database: a pod deleted then waited out its
    whole grace period before it was killed."""
    pod.add_init_file("20-slow.sh", "#!/bin/sh\nsleep 120\n", 0o755)
    chown_tree(pod.initdb_dir, pod.user)
    log = pod.root / "first.log"
    first = FirstProcess(pod, [str(ENTRYPOINT), *pod.server_args()], pod.env(), log)
    try:
        deadline = time.monotonic() + 60
        while "20-slow.sh" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "20-slow.sh" in log.read_text(), log.read_text()
        first.signal(signal.SIGINT)  # the image's STOPSIGNAL
        assert first.launcher.wait(5) != 0, log.read_text()
    finally:
        first.end()
    assert not (pod.pgdata / "PG_VERSION").exists()
    (pod.initdb_dir / "20-slow.sh").unlink()
    again = start(pod, servers)
    again.wait_ready()
    assert query(pod, "SELECT 1", user="postgres", password=SUPERUSER_PASSWORD,
                 database="postgres") == "1"
