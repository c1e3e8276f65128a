"""The programs the PostgreSQL and PgBouncer images run for the operator's pods,
run for real against the host's PostgreSQL 15:

- ``stackforge-primary-upkeep`` (the primary's sidecar) makes the server take
  the passwords of its environment, and refuse the ones it had; then keeps one
  replication slot per listed replica, never dropping a slot in use nor one
  that is not its own, and makes the admin accounts login roles with their
  role's privileges, disabling the login of removed ones;
- ``stackforge-clone-replica`` (a replica's init container) clones a streaming
  replica from the primary through its slot, keeps an earlier clone, and
  leaves nothing behind when the clone fails;
- ``stackforge-replica-ready`` (a replica's readiness probe) passes only while
  the replica streams;
- ``stackforge-pgbouncer-userlist`` writes PgBouncer's auth file.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.images.postgres_pods import (
    APP_PASSWORD,
    PG15_BIN,
    SUPERUSER_PASSWORD,
    FirstProcess,
    Pod,
    Server,
    chown_tree,
    make_pod,
    program,
    query,
    run_program,
    start,
    start_program,
)
from tests.support.tenants import eventually

UPKEEP = program("postgres/stackforge-primary-upkeep.sh")
REPLICA_READY = program("postgres/stackforge-replica-ready.sh")
CLONE_REPLICA = program("postgres/stackforge-clone-replica.sh")
REPLICA_FOLLOWS = program("postgres/stackforge-replica-follows.sh")
USERLIST = program("pgbouncer/stackforge-pgbouncer-userlist.sh")
REPLICATION_PASSWORD = "replication-password"


def processes_in_group(group: int) -> list[int]:
    """Live processes of a process group (the sidecar's session)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def require_peer_login() -> None:
    """The upkeep sidecar logs in by peer as OS user postgres: the server must run as
    that user, which it does only when the tests run as root."""
    if os.geteuid() != 0:
        pytest.fail("the upkeep sidecar logs in by peer as OS user postgres: run as root")


def logs_in(pod: Pod, user: str, password: str) -> bool:
    try:
        return query(pod, "SELECT 1", user=user, password=password, database="postgres") == "1"
    except subprocess.CalledProcessError as refused:
        assert "password authentication failed" in refused.stderr, refused.stderr
        return False


def wait_for(path: Path, process: subprocess.Popen[bytes], log: Path,
             timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)


@contextmanager
def password_upkeep(pod: Pod, passwords: dict[str, str], retry_seconds: str = "0.2",
                    **extra_env: str) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    """The sidecar with these role passwords, retrying every ``retry_seconds``;
    its ready marker and its log. Killed, with what it started, at the end."""
    marker = pod.root / "tmp" / "synced"
    log = pod.root / "upkeep.log"
    settings = {"PGHOST": str(pod.run_dir), "PGPORT": str(pod.port),
                "READY_MARKER": str(marker), "RETRY_SECONDS": retry_seconds,
                **passwords, **extra_env}
    sidecar = start_program(pod, UPKEEP, pod.env(**settings), log)
    try:
        yield sidecar, marker, log
    finally:
        if sidecar.poll() is None:
            os.killpg(sidecar.pid, signal.SIGKILL)
            sidecar.wait()


def test_upkeep_waits_for_the_server_then_makes_it_take_the_new_passwords(
    pod: Pod, servers: list[Server]
) -> None:
    require_peer_login()
    initialised = start(pod, servers)
    initialised.wait_ready()
    initialised.stop()

    # Rotated: what the Secret now holds. The sidecar starts before the server,
    # as it may in the pod, and must keep trying.
    rotated = {"POSTGRES_PASSWORD": "new super", "APP_PASSWORD": "new 'app'",
               "REPLICATION_PASSWORD": "new $repl"}
    path, records = psql_recording_shim(pod)
    with password_upkeep(pod, rotated, PATH=path) as (sidecar, marker, log):
        time.sleep(1)
        assert sidecar.poll() is None and not marker.exists()
        # Without the server's socket it waits quietly: no psql failing into
        # the pod's log five times a second (a restore may take hours).
        assert log.read_text(errors="replace") == ""
        # The server comes back with the old passwords in its catalogue.
        start(pod, servers, **rotated).wait_ready()
        wait_for(marker, sidecar, log)
        for user, old, new in (("postgres", SUPERUSER_PASSWORD, rotated["POSTGRES_PASSWORD"]),
                               ("shop_app", APP_PASSWORD, rotated["APP_PASSWORD"]),
                               ("replicator", REPLICATION_PASSWORD,
                                rotated["REPLICATION_PASSWORD"])):
            assert logs_in(pod, user, new), user
            assert not logs_in(pod, user, old), user
        # No password in what it prints (the pod's log).
        printed = log.read_text()
        assert "role passwords match" in printed
        assert not any(p in printed for p in rotated.values())
        # Nor in any psql's arguments (a command line is anyone's to read: ps).
        arguments = recorded_arguments(records)
        assert "--file=-" in arguments
        assert not any(p in a for a in arguments for p in rotated.values()), arguments
        # TERM (the pod stopping) ends it at once, successfully, and nothing of it
        # stays behind (its pause's sleep included).
        sidecar.send_signal(signal.SIGTERM)
        assert sidecar.wait(5) == 0
        time.sleep(0.2)
        assert processes_in_group(sidecar.pid) == []


def make_standby(pod: Pod, servers: list[Server]) -> None:
    """An initialised data directory that starts in recovery with nothing to
    replay from: it stays a standby until promoted."""
    initialised = start(pod, servers)
    initialised.wait_ready()
    initialised.stop()
    (pod.pgdata / "standby.signal").touch()
    chown_tree(pod.pgdata / "standby.signal", pod.user)


def test_upkeep_retrying_while_the_server_recovers_puts_no_password_in_any_log(
    pod: Pod, servers: list[Server]
) -> None:
    """A restored server (drill, clone, in-place recovery) takes connections
    read-only until it is promoted. The sidecar waits for the promotion
    instead of trying to change the passwords: a try would be refused, and the
    server would log the refusal (and by default the statement's text)."""
    require_peer_login()
    make_standby(pod, servers)
    recovering = start(pod, servers)
    recovering.wait_ready()
    assert query(pod, "SELECT pg_is_in_recovery()", user="postgres",
                 password=SUPERUSER_PASSWORD, database="postgres") == "t"

    rotated = {"POSTGRES_PASSWORD": "rotated-super-7f3a", "APP_PASSWORD": "rotated-app-9c1e",
               "REPLICATION_PASSWORD": "rotated-repl-2b8d"}
    with password_upkeep(pod, rotated) as (sidecar, marker, log):
        # Asked many times at its 0.2 s pace, it has tried nothing yet.
        time.sleep(1.5)
        assert sidecar.poll() is None and not marker.exists()
        assert not logs_in(pod, "postgres", rotated["POSTGRES_PASSWORD"])
        query(pod, "SELECT pg_promote()", user="postgres", password=SUPERUSER_PASSWORD,
              database="postgres")
        wait_for(marker, sidecar, log)
        assert logs_in(pod, "postgres", rotated["POSTGRES_PASSWORD"])
        server_log, printed = recovering.log, log.read_text(errors="replace")
        # No refusal in either log, and no password.
        assert "read-only transaction" not in server_log
        assert "read-only transaction" not in printed
        assert "role passwords match" in printed
        for password in rotated.values():
            assert password not in server_log
            assert password not in printed


def test_upkeep_asks_at_its_starting_pace_once_the_servers_socket_is_there(
    pod: Pod, servers: list[Server]
) -> None:
    """A drill's RTO waits for the sidecar to see the promotion: once the socket
    is there it asks every STARTING_RETRY_SECONDS, not at the slow pace it
    waits for the socket with."""
    require_peer_login()
    make_standby(pod, servers)
    start(pod, servers).wait_ready()
    rotated = {"POSTGRES_PASSWORD": "rotated-super-1e4f", "APP_PASSWORD": "rotated-app-6b2d",
               "REPLICATION_PASSWORD": "rotated-repl-9a5c"}
    with password_upkeep(pod, rotated, retry_seconds="60",
                         STARTING_RETRY_SECONDS="0.1") as (sidecar, marker, log):
        time.sleep(0.5)  # asked, in recovery: not yet
        assert sidecar.poll() is None and not marker.exists()
        query(pod, "SELECT pg_promote()", user="postgres", password=SUPERUSER_PASSWORD,
              database="postgres")
        # At the 60 s pace the next question would come a minute later.
        wait_for(marker, sidecar, log, timeout=5)
        assert logs_in(pod, "postgres", rotated["POSTGRES_PASSWORD"])


def psql_counting_shim(pod: Pod) -> tuple[str, Path]:
    """A PATH whose psql counts its runs into the returned file, then runs PG 15's."""
    shims = pod.root / "shims"
    shims.mkdir()
    calls = pod.root / "tmp" / "psql-calls"
    shim = shims / "psql"
    shim.write_text(f'#!/bin/sh\necho run >>{calls}\nexec {PG15_BIN}/psql "$@"\n')
    shim.chmod(0o755)
    return f"{shims}:{PG15_BIN}:/usr/bin:/bin", calls


def psql_recording_shim(pod: Pod) -> tuple[str, Path]:
    """A PATH whose psql writes its arguments to a file of its own in the returned
    directory, then runs PG 15's: every run is seen, however short."""
    shims, records = pod.root / "recording-shims", pod.root / "tmp" / "psql-argv"
    shims.mkdir()
    records.mkdir()
    chown_tree(records, pod.user)
    shim = shims / "psql"
    shim.write_text("#!/bin/sh\n"
                    f"printf '%s\\0' \"$@\" > {records}/psql.$$\n"
                    f'exec {PG15_BIN}/psql "$@"\n')
    shim.chmod(0o755)
    return f"{shims}:{PG15_BIN}:/usr/bin:/bin", records


def recorded_arguments(records: Path) -> list[str]:
    """Every argument of every recorded psql run."""
    return [arg.decode() for path in records.iterdir()
            for arg in path.read_bytes().split(b"\0")[:-1]]


def test_upkeep_watches_a_recovering_server_in_one_session_until_its_promotion(
    pod: Pod, servers: list[Server]
) -> None:
    """A replay may take hours: at a drill's pace of 0.05 s, a psql each look
    would be twenty processes and logins a second. The sidecar asks once, then
    watches the server in one session at that pace, and sees the promotion
    as soon. TERM ends it at once while it watches."""
    require_peer_login()
    make_standby(pod, servers)
    start(pod, servers).wait_ready()
    path, calls = psql_counting_shim(pod)
    rotated = {"POSTGRES_PASSWORD": "watched-super-4b2e", "APP_PASSWORD": "watched-app-1f7c",
               "REPLICATION_PASSWORD": "watched-repl-8d3a"}
    with password_upkeep(pod, rotated, retry_seconds="60", STARTING_RETRY_SECONDS="0.05",
                         PATH=path) as (sidecar, marker, log):
        time.sleep(2)  # forty looks at this pace
        assert sidecar.poll() is None and not marker.exists()
        # The first question, and the session that watches.
        assert calls.read_text().splitlines() == ["run", "run"]
        promoted_at = time.monotonic()
        query(pod, "SELECT pg_promote()", user="postgres", password=SUPERUSER_PASSWORD,
              database="postgres")
        wait_for(marker, sidecar, log, timeout=5)
        assert time.monotonic() - promoted_at < 2
        assert logs_in(pod, "postgres", rotated["POSTGRES_PASSWORD"])
        assert log.read_text(errors="replace").strip() == (
            "role passwords match the credentials Secret")


def test_upkeep_ends_at_once_on_term_while_it_watches_a_recovering_server(
    pod: Pod, servers: list[Server]
) -> None:
    require_peer_login()
    make_standby(pod, servers)
    start(pod, servers).wait_ready()
    path, calls = psql_counting_shim(pod)
    upkeep = password_upkeep(
        pod, {"POSTGRES_PASSWORD": "x", "APP_PASSWORD": "y", "REPLICATION_PASSWORD": "z"},
        retry_seconds="60", STARTING_RETRY_SECONDS="30", PATH=path)
    with upkeep as (sidecar, marker, log):
        eventually(lambda: calls.exists() and len(calls.read_text().splitlines()) == 2,
                   timeout=10)
        sidecar.send_signal(signal.SIGTERM)
        assert sidecar.wait(timeout=3) == 0, log.read_text(errors="replace")
        assert not marker.exists()


def test_upkeep_reaches_a_server_on_an_abstract_socket_and_waits_quietly_for_it(
    pod: Pod, servers: list[Server]
) -> None:
    """A drill's restored server and its upkeep share no directory (the pod has
    no volume): the socket is in the abstract namespace of the network
    namespace they share, PGHOST=@name. Until it is listed the sidecar waits
    without a psql, as it does for a socket file."""
    require_peer_login()
    start(pod, servers).wait_ready()
    servers.pop().stop()  # initialised; started again below on the abstract socket only
    socket = f"@stackforge-test-{uuid.uuid4().hex[:8]}"
    rotated = {"POSTGRES_PASSWORD": "abstract-super-3c1d", "APP_PASSWORD": "abstract-app-77e0",
               "REPLICATION_PASSWORD": "abstract-repl-0b9f"}
    # psql through a shim that counts its runs: before the socket is listed,
    # none (a failed try would be quiet too: "accepting connections").
    path, calls = psql_counting_shim(pod)
    with password_upkeep(pod, rotated, PGHOST=socket, PATH=path) as (sidecar, marker, log):
        time.sleep(1)
        assert sidecar.poll() is None and not marker.exists()
        assert log.read_text(errors="replace") == ""
        assert not calls.exists()
        server = Server(pod, pod.env(), ["-c", f"unix_socket_directories={socket}"])
        servers.append(server)
        server.wait_ready()
        assert not (pod.run_dir / f".s.PGSQL.{pod.port}").exists()
        wait_for(marker, sidecar, log)
        assert logs_in(pod, "postgres", rotated["POSTGRES_PASSWORD"])
        assert logs_in(pod, "shop_app", rotated["APP_PASSWORD"])
        assert calls.exists()  # the shim was the psql it ran


def test_upkeep_waits_quietly_for_a_server_not_yet_taking_connections(
    pod: Pod, servers: list[Server]
) -> None:
    """A restored server's socket is there long before it takes connections
    (its start-up replays up to a consistent state first). The sidecar's
    question then fails with "not yet accepting connections"; that is waited
    for without a line in the pod's log. A standby without hot standby answers
    the same way for as long as it recovers, which makes the wait testable."""
    require_peer_login()
    make_standby(pod, servers)
    recovering = Server(pod, pod.env(), extra_args=["-c", "hot_standby=off"])
    servers.append(recovering)
    socket = pod.run_dir / f".s.PGSQL.{pod.port}"
    eventually(lambda: socket.exists() or recovering.process.poll() is not None, timeout=30)
    assert recovering.process.poll() is None, recovering.log

    rotated = {"POSTGRES_PASSWORD": "rotated-super-5d1c", "APP_PASSWORD": "rotated-app-8e2f",
               "REPLICATION_PASSWORD": "rotated-repl-3a7b"}
    with password_upkeep(pod, rotated) as (sidecar, marker, log):
        time.sleep(1.5)  # several tries at its 0.2 s pace
        assert sidecar.poll() is None and not marker.exists()
        assert "Hot standby mode is disabled" in recovering.log  # it was asked, and refused
        assert log.read_text(errors="replace") == ""
        # popen_kwargs() types its values object, as in postgres_pods.run_program.
        subprocess.run(  # type: ignore[call-overload]
            [str(PG15_BIN / "pg_ctl"), "promote", "-D", str(pod.pgdata)],
            check=True, capture_output=True, **pod.user.popen_kwargs())
        wait_for(marker, sidecar, log)
        assert log.read_text(errors="replace").strip() == (
            "role passwords match the credentials Secret")


def test_upkeep_refuses_to_start_without_its_settings(pod: Pod) -> None:
    env = pod.env(PGHOST=str(pod.run_dir))
    del env["APP_PASSWORD"]
    result = run_program(pod, UPKEEP, env, timeout=10)
    assert result.returncode != 0
    assert "APP_PASSWORD must be set" in result.stderr


@pytest.fixture
def replica() -> Iterator[Pod]:
    """A second pod's tree: the replica's volume, empty."""
    yield from make_pod()


def clone_env(primary: Pod, replica: Pod, password: str = REPLICATION_PASSWORD,
              slot: str = "postgres_replica_0") -> dict[str, str]:
    return {"PATH": f"{PG15_BIN}:/usr/bin:/bin", "PGDATA": str(replica.pgdata),
            "PRIMARY_HOST": "127.0.0.1", "PRIMARY_PORT": str(primary.port),
            "REPLICATION_USER": "replicator", "PGPASSWORD": password,
            "REPLICATION_SLOT": slot, "TMPDIR": str(replica.root / "tmp")}


def superuser_query(pod: Pod, sql: str) -> str:
    return query(pod, sql, user="postgres", password=SUPERUSER_PASSWORD, database="postgres")


def slots(pod: Pod) -> str:
    """name:active of every slot, in name order."""
    return superuser_query(pod, "SELECT coalesce(string_agg(slot_name || ':' || active, ',' "
                                "ORDER BY slot_name), '') FROM pg_replication_slots")


def eventually_equal(read: Callable[[], str], wanted: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (value := read()) != wanted:
        assert time.monotonic() < deadline, f"{value!r}, not {wanted!r}, after {timeout}s"
        time.sleep(0.2)


def replica_ready(replica: Pod, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return run_program(replica, REPLICA_READY, {"PATH": f"{PG15_BIN}:/usr/bin:/bin",
                                                "PGHOST": str(replica.run_dir),
                                                "PGPORT": str(replica.port), **extra_env})


@pytest.fixture
def upkeep(pod: Pod) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start the primary's sidecar with a slot list; stopped at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def run(slot_list: str, **extra_env: str) -> subprocess.Popen[bytes]:
        (pod.root / "tmp" / "replica-slots").write_text(slot_list)
        chown_tree(pod.root / "tmp", pod.user)
        process = start_program(pod, UPKEEP, pod.env(
            PGHOST=str(pod.run_dir), PGPORT=str(pod.port),
            READY_MARKER=str(pod.root / "tmp" / "synced"), RETRY_SECONDS="0.2",
            SLOTS_FILE=str(pod.root / "tmp" / "replica-slots"), SLOT_SYNC_SECONDS="0.3",
            **extra_env), pod.root / "upkeep.log")
        started.append(process)
        return process

    yield run
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_clone_replica_streams_through_its_slot_and_keeps_its_clone_across_restarts(
    pod: Pod, replica: Pod, servers: list[Server],
    upkeep: Callable[..., subprocess.Popen[bytes]],
) -> None:
    require_peer_login()
    primary = start(pod, servers)
    primary.wait_ready()
    query(pod, "CREATE TABLE t AS SELECT generate_series(1, 100) AS n", user="shop_app",
          password=APP_PASSWORD, database="shop")

    # The primary has not heard of this replica yet: the clone has its slot made.
    cloned = run_program(replica, CLONE_REPLICA, clone_env(pod, replica))
    assert cloned.returncode == 0, cloned.stderr
    assert "creating replication slot postgres_replica_0" in cloned.stderr
    assert slots(pod) == "postgres_replica_0:false"
    assert (replica.pgdata / "PG_VERSION").read_text().strip() == "15"
    assert (replica.pgdata / "standby.signal").exists()
    assert oct(replica.pgdata.stat().st_mode & 0o777) == oct(0o700)
    assert not Path(f"{replica.pgdata}.clone").exists()

    standby = start_standby(pod, replica, servers)
    eventually_equal(lambda: replica_ready(replica).stderr.strip(), "")
    assert replica_ready(replica).returncode == 0
    query(pod, "INSERT INTO t VALUES (101)", user="shop_app", password=APP_PASSWORD,
          database="shop")
    eventually_equal(lambda: query(replica, "SELECT count(*) FROM t", user="shop_app",
                                   password=APP_PASSWORD, database="shop"), "101")
    assert superuser_query(pod, "SELECT application_name || ':' || state FROM "
                                "pg_stat_replication") == "replica-0:streaming"

    # The upkeep keeps the listed slots (making the missing one), and does not
    # drop an unlisted slot while a replica uses it, nor a slot not its own.
    superuser_query(pod, "SELECT 1 FROM pg_create_physical_replication_slot('someone_elses')")
    sidecar = upkeep("postgres_replica_1\n")
    eventually_equal(lambda: slots(pod),
                     "postgres_replica_0:true,postgres_replica_1:false,someone_elses:false")
    time.sleep(1.5)  # several passes
    assert slots(pod) == "postgres_replica_0:true,postgres_replica_1:false,someone_elses:false"

    # The replica stops: it is not listed, so its slot goes (it holds WAL back).
    standby.stop()
    result = replica_ready(replica)
    assert result.returncode != 0 and "not ready" in result.stderr
    eventually_equal(lambda: slots(pod), "postgres_replica_1:false,someone_elses:false")
    assert sidecar.poll() is None
    log = (pod.root / "upkeep.log").read_text()
    assert "replication slot postgres_replica_1 created" in log
    assert "replication slot postgres_replica_0 dropped" in log

    # A restart of the pod keeps the clone (no second pg_basebackup) and repairs
    # the mode a recursive fsGroup chown leaves.
    (replica.pgdata / "standby.signal").unlink()
    replica.pgdata.chmod(0o770)
    again = run_program(replica, CLONE_REPLICA, clone_env(pod, replica))
    assert again.returncode == 0, again.stderr
    assert "cloning" not in again.stderr
    assert (replica.pgdata / "standby.signal").exists()
    assert oct(replica.pgdata.stat().st_mode & 0o777) == oct(0o700)


def test_a_clone_uses_the_slot_the_primary_made(
    pod: Pod, replica: Pod, servers: list[Server]
) -> None:
    start(pod, servers).wait_ready()
    superuser_query(pod, "SELECT 1 FROM pg_create_physical_replication_slot('postgres_replica_3')")
    cloned = run_program(replica, CLONE_REPLICA, clone_env(pod, replica,
                                                           slot="postgres_replica_3"))
    assert cloned.returncode == 0, cloned.stderr
    assert "creating replication slot" not in cloned.stderr
    # The clone held the slot: it now reserves WAL from the clone's start on.
    assert superuser_query(pod, "SELECT restart_lsn IS NOT NULL FROM pg_replication_slots "
                                "WHERE slot_name = 'postgres_replica_3'") == "t"


def test_a_replica_of_a_primary_restored_to_a_moment_keeps_following_it(
    pod: Pod, replica: Pod, servers: list[Server]
) -> None:
    """A primary restored to a moment (a clone, an in-place recovery) keeps what
    pgBackRest wrote into its postgresql.auto.conf; pg_basebackup copied it, and
    the standby stopped at that target at the first later commit, then failed
    for ever or promoted itself out of the replica Service."""
    primary = start(pod, servers)
    primary.wait_ready()
    query(pod, "CREATE TABLE t AS SELECT generate_series(1, 100) AS n", user="shop_app",
          password=APP_PASSWORD, database="shop")
    moment = superuser_query(pod, "SELECT now()")
    with (pod.pgdata / "postgresql.auto.conf").open("a") as settings:
        # As pgBackRest 2.45 writes them (restoreRecoveryWriteAutoConf).
        settings.write("\n# Recovery settings generated by pgBackRest restore\n"
                       "restore_command = 'pgbackrest --stanza=db archive-get %f \"%p\"'\n"
                       f"recovery_target_time = '{moment}'\n"
                       "recovery_target_action = 'promote'\n")
    superuser_query(pod, "SELECT pg_reload_conf()")  # ignored: not in recovery

    cloned = run_program(replica, CLONE_REPLICA, clone_env(pod, replica))
    assert cloned.returncode == 0, cloned.stderr
    copied = (replica.pgdata / "postgresql.auto.conf").read_text()
    assert "recovery_target" not in copied and "restore_command" not in copied, copied
    # A copy an older image cloned still has them: its next start drops them.
    (replica.pgdata / "postgresql.auto.conf").write_text(
        copied + "recovery_target_action = 'promote'\n")
    again = run_program(replica, CLONE_REPLICA, clone_env(pod, replica))
    assert again.returncode == 0 and "cloning" not in again.stderr, again.stderr
    assert "recovery_target" not in (replica.pgdata / "postgresql.auto.conf").read_text()
    start_standby(pod, replica, servers)
    query(pod, "INSERT INTO t VALUES (101)", user="shop_app", password=APP_PASSWORD,
          database="shop")
    eventually_equal(lambda: query(replica, "SELECT count(*) FROM t", user="shop_app",
                                   password=APP_PASSWORD, database="shop"), "101")
    assert superuser_query(replica, "SELECT pg_is_in_recovery()") == "t"
    eventually_equal(lambda: replica_ready(replica).stderr.strip(), "")


def test_a_clone_waits_for_its_primary_to_answer_then_runs_the_server(
    pod: Pod, replica: Pod, servers: list[Server]
) -> None:
    log = replica.root / "clone.log"
    env = {**clone_env(pod, replica), "PRIMARY_WAIT_INTERVAL": "0.2"}
    clone = start_program(replica, CLONE_REPLICA, env, log)
    try:
        eventually(lambda: "waiting for the primary" in log.read_text(), timeout=30)
        time.sleep(1)
        assert clone.poll() is None, log.read_text()  # still waiting, not failed
        start(pod, servers).wait_ready()
        assert clone.wait(60) == 0, log.read_text()
    finally:
        if clone.poll() is None:
            os.killpg(clone.pid, signal.SIGKILL)
            clone.wait()
    assert "clone complete" in log.read_text()
    assert (replica.pgdata / "standby.signal").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_clone_waiting_as_its_containers_first_process_ends_on_the_stop_signal(
    pod: Pod, replica: Pod, signum: int
) -> None:
    """The first process of its container, the script ignored the stop signal (no
    handler): a replica deleted while it waited for its primary, or cloned,
    waited out its whole grace period and was then killed."""
    log = replica.root / "clone.log"
    env = {**clone_env(pod, replica), "PRIMARY_WAIT_INTERVAL": "30"}  # no primary
    clone = FirstProcess(replica, [str(CLONE_REPLICA)], env, log)
    try:
        eventually(lambda: "waiting for the primary" in log.read_text(), timeout=30)
        clone.signal(signum)
        assert clone.launcher.wait(5) != 0, log.read_text()
    finally:
        clone.end()
    assert not replica.pgdata.exists()


def test_a_failed_clone_leaves_nothing_a_restart_would_take_for_a_replica(
    pod: Pod, replica: Pod, servers: list[Server]
) -> None:
    start(pod, servers).wait_ready()
    failed = run_program(replica, CLONE_REPLICA, clone_env(pod, replica, password="wrong"))
    assert failed.returncode != 0
    assert "password authentication failed" in failed.stderr
    assert not (replica.pgdata / "PG_VERSION").exists()
    assert not Path(f"{replica.pgdata}.clone", "PG_VERSION").exists()

    missing = clone_env(pod, replica)
    del missing["PRIMARY_HOST"]
    refused = run_program(replica, CLONE_REPLICA, missing)
    assert refused.returncode != 0 and "PRIMARY_HOST" in refused.stderr


def start_standby(primary: Pod, replica: Pod, servers: list[Server],
                  slot: str = "postgres_replica_0") -> Server:
    """The replica's server as its StatefulSet starts it: its primary and its slot added."""
    conninfo = (f"host=127.0.0.1 port={primary.port} user=replicator "
                f"password={REPLICATION_PASSWORD} application_name=replica-0")
    standby = Server(replica, replica.env(), extra_args=[
        "-c", f"primary_conninfo={conninfo}", "-c", f"primary_slot_name={slot}"])
    servers.append(standby)
    standby.wait_ready()
    return standby


def follows_env(primary: Pod, replica: Pod) -> dict[str, str]:
    """The liveness probe's environment: the replica container's, this tree's paths."""
    return {**clone_env(primary, replica), "PGHOST": str(replica.run_dir),
            "PGPORT": str(replica.port), "STALL_STATE": str(replica.root / "tmp" / "stall"),
            "STALL_CHECKS": "2",
            "TERMINATION_LOG": str(replica.root / "tmp" / "termination-log")}


def probe_until_it_fails(replica: Pod, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + 60
    while (probe := run_program(replica, REPLICA_FOLLOWS, env)).returncode == 0:
        assert time.monotonic() < deadline, "the probe never failed"
        time.sleep(0.5)
    return probe


@pytest.fixture
def second_replica() -> Iterator[Pod]:
    """A third pod's tree: another replica's volume, empty."""
    yield from make_pod()


def test_the_liveness_probe_proves_a_replica_past_a_restored_primarys_fork(
    pod: Pod, replica: Pod, second_replica: Pod, servers: list[Server]
) -> None:
    """An in-place recovery restores the primary to a moment: the same system on a
    new timeline forked in the past, with its slots made anew. A replica back on
    its old volume had replayed past the fork and can never follow; nothing
    proved it, and it stayed not ready until the primary had written a fifth of
    its volume in WAL. The restored primary is made here by promoting a standby
    that stopped earlier than the replica: its timeline forks where it stopped."""
    require_peer_login()
    primary = start(pod, servers)
    primary.wait_ready()
    query(pod, "CREATE TABLE t AS SELECT generate_series(1, 100) AS n", user="shop_app",
          password=APP_PASSWORD, database="shop")

    def rows(at: Pod) -> str:
        return query(at, "SELECT count(*) FROM t", user="shop_app", password=APP_PASSWORD,
                     database="shop")

    early = second_replica
    for standby_pod, slot in ((replica, "postgres_replica_0"), (early, "postgres_replica_1")):
        cloned = run_program(standby_pod, CLONE_REPLICA, clone_env(pod, standby_pod, slot=slot))
        assert cloned.returncode == 0, cloned.stderr
    follower = start_standby(pod, replica, servers)
    stopped_early = start_standby(pod, early, servers, slot="postgres_replica_1")
    eventually_equal(lambda: rows(early), "100")
    stopped_early.stop()  # it stops at the fork to be
    query(pod, "INSERT INTO t SELECT generate_series(101, 200)", user="shop_app",
          password=APP_PASSWORD, database="shop")
    eventually_equal(lambda: rows(replica), "200")  # the replica goes past it
    follower.stop()
    primary.stop()

    # The "restored" primary: the early standby promoted, timeline 2 from its stop.
    start_standby(pod, early, servers, slot="postgres_replica_1")
    superuser_query(early, "SELECT pg_promote()")
    eventually_equal(lambda: superuser_query(early, "SELECT pg_is_in_recovery()"), "f")
    superuser_query(early, "SELECT 1 FROM pg_create_physical_replication_slot("
                           "'postgres_replica_0', true)")
    assert rows(early) == "100"

    start_standby(early, replica, servers)
    env = follows_env(early, replica)
    failed = probe_until_it_fails(replica, env)
    assert "the primary's timeline 2 left timeline 1 at" in failed.stderr, failed.stderr
    assert Path(f"{replica.pgdata}.reclone").exists()


def test_the_liveness_probe_proves_a_replica_that_was_promoted(
    pod: Pod, replica: Pod, servers: list[Server]
) -> None:
    """A replica that promoted itself (a restored primary's recovery target it
    inherited, before the clone dropped it) is on a later timeline than the
    primary and can never follow it again; nothing proved it."""
    require_peer_login()
    start(pod, servers).wait_ready()
    query(pod, "CREATE TABLE t AS SELECT generate_series(1, 100) AS n", user="shop_app",
          password=APP_PASSWORD, database="shop")
    assert run_program(replica, CLONE_REPLICA, clone_env(pod, replica)).returncode == 0
    standby = start_standby(pod, replica, servers)
    eventually_equal(lambda: query(replica, "SELECT count(*) FROM t", user="shop_app",
                                   password=APP_PASSWORD, database="shop"), "100")
    superuser_query(replica, "SELECT pg_promote()")
    eventually_equal(lambda: superuser_query(replica, "SELECT pg_is_in_recovery()"), "f")
    standby.stop()
    # Its next start makes it a standby again (the marker), of the same primary.
    restarted = run_program(replica, CLONE_REPLICA, clone_env(pod, replica))
    assert restarted.returncode == 0, restarted.stderr
    start_standby(pod, replica, servers)
    failed = probe_until_it_fails(replica, follows_env(pod, replica))
    assert "past the primary's 1 (it was promoted)" in failed.stderr, failed.stderr


def test_a_replica_whose_slot_was_invalidated_is_recloned_and_streams_again(
    pod: Pod, replica: Pod, servers: list[Server]
) -> None:
    require_peer_login()
    start(pod, servers).wait_ready()
    query(pod, "CREATE TABLE t AS SELECT generate_series(1, 100) AS n", user="shop_app",
          password=APP_PASSWORD, database="shop")
    cloned = run_program(replica, CLONE_REPLICA, clone_env(pod, replica))
    assert cloned.returncode == 0, cloned.stderr
    standby = start_standby(pod, replica, servers)
    # Streaming only after a while: a receiver the primary is about to refuse
    # also says "streaming", for a few milliseconds.
    # The receiver starts a moment after the server does (seen in a CI run: "no
    # WAL receiver" yet); once there, it is too young for a 600 s threshold.
    too_young = "the WAL receiver connected less than 600 s ago"

    def verdict() -> str:
        said = replica_ready(replica, STREAMING_SECONDS="600").stderr
        return too_young if too_young in said else said

    eventually_equal(verdict, too_young)
    young = replica_ready(replica, STREAMING_SECONDS="600")
    assert young.returncode == 1 and too_young in young.stderr, young.stderr
    eventually_equal(lambda: replica_ready(replica).stderr.strip(), "")
    env = follows_env(pod, replica)
    marker = Path(f"{replica.pgdata}.reclone")
    # Streaming: never a failure, however often asked; and a proof given
    # before no longer holds (the restart it asked for has not come yet).
    marker.write_text("an old proof\n")
    for _ in range(3):
        assert run_program(replica, REPLICA_FOLLOWS, env).returncode == 0
    assert not marker.exists()

    # The replica is away while the primary writes more WAL than a slot may hold.
    superuser_query(pod, "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
    superuser_query(pod, "SELECT pg_reload_conf()")
    standby.stop()
    for n in range(3):
        query(pod, f"INSERT INTO t SELECT generate_series(1, 20000) + {n} * 20000",
              user="shop_app", password=APP_PASSWORD, database="shop")
        superuser_query(pod, "SELECT pg_switch_wal()")
    superuser_query(pod, "CHECKPOINT")
    assert superuser_query(pod, "SELECT wal_status FROM pg_replication_slots") == "lost"

    # Back, it cannot stream; the probe proves it, leaves the marker and says why.
    standby = start_standby(pod, replica, servers)
    # Never ready, however often asked across the receiver's retries (every 5 s).
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        assert replica_ready(replica).returncode != 0
    failed = probe_until_it_fails(replica, env)
    assert "invalidated slot postgres_replica_0" in failed.stderr
    assert "max_slot_wal_keep_size" in marker.read_text()
    termination = (replica.root / "tmp" / "termination-log").read_text()
    assert termination.startswith("re-clone: the primary invalidated slot postgres_replica_0")

    # The next start throws the copy away, drops the dead slot, clones anew and
    # runs the server (its arguments).
    standby.stop()
    recloned = run_program(replica, CLONE_REPLICA, clone_env(pod, replica),
                           "echo", "the server starts")
    assert recloned.returncode == 0, recloned.stderr
    assert "re-cloning: the primary invalidated slot" in recloned.stderr
    assert "dropped invalidated slot postgres_replica_0" in recloned.stderr
    assert "creating replication slot postgres_replica_0" in recloned.stderr
    assert recloned.stdout.strip() == "the server starts"
    assert not marker.exists()
    start_standby(pod, replica, servers)
    eventually_equal(lambda: replica_ready(replica).stderr.strip(), "")
    assert query(replica, "SELECT count(*) FROM t", user="shop_app", password=APP_PASSWORD,
                 database="shop") == "60100"
    assert run_program(replica, REPLICA_FOLLOWS, env).returncode == 0


def test_the_liveness_probe_passes_without_proof_and_fails_for_another_cluster(
    pod: Pod, replica: Pod, servers: list[Server]
) -> None:
    require_peer_login()
    primary = start(pod, servers)
    primary.wait_ready()
    assert run_program(replica, CLONE_REPLICA, clone_env(pod, replica)).returncode == 0
    env = follows_env(pod, replica)
    # This server not answering (starting, recovering) is not proof.
    for _ in range(3):
        assert run_program(replica, REPLICA_FOLLOWS, env).returncode == 0
    standby = start_standby(pod, replica, servers)
    eventually_equal(lambda: replica_ready(replica).stderr.strip(), "")
    # Nor is a primary that does not answer: the replica waits for it.
    primary.stop()
    eventually_equal(lambda: str(replica_ready(replica).returncode), "1")
    for _ in range(4):
        assert run_program(replica, REPLICA_FOLLOWS, env).returncode == 0
    assert not Path(f"{replica.pgdata}.reclone").exists()

    # A primary made anew on an empty volume is another cluster: proof.
    standby.stop()
    for path in pod.data_dir.iterdir():
        subprocess.run(["rm", "-rf", str(path)], check=True)
    start(pod, servers).wait_ready()
    start_standby(pod, replica, servers)
    failed = probe_until_it_fails(replica, env)
    assert "the primary is another cluster" in failed.stderr
    assert Path(f"{replica.pgdata}.reclone").exists()


def test_userlist_writes_a_private_auth_file_with_quotes_doubled(tmp_path: Path) -> None:
    auth_file = tmp_path / "userlist.txt"
    result = subprocess.run(
        [str(USERLIST)], capture_output=True, text=True, check=False,
        env={"PATH": "/usr/bin:/bin", "DB_USER": 'shop"app', "DB_PASSWORD": 'p "w" $x',
             "USERLIST_FILE": str(auth_file)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert auth_file.read_text() == '"shop""app" "p ""w"" $x"\n'
    assert oct(auth_file.stat().st_mode & 0o777) == oct(0o600)
    assert "p \"w\"" not in result.stderr
    assert not Path(f"{auth_file}.new").exists()


def test_upkeep_makes_admin_accounts_login_roles_with_their_roles_privileges(
    pod: Pod, servers: list[Server], upkeep: Callable[..., subprocess.Popen[bytes]]
) -> None:
    require_peer_login()
    start(pod, servers).wait_ready()
    query(pod, "CREATE TABLE orders AS SELECT generate_series(1, 3) AS id", user="shop_app",
          password=APP_PASSWORD, database="shop")
    superuser_query(pod, "CREATE ROLE mallory LOGIN PASSWORD 'kept'")
    accounts_file = pod.root / "tmp" / "accounts.json"

    def accounts(*entries: tuple[str, str, str]) -> None:
        accounts_file.write_text(json.dumps(
            [{"name": n, "role": r, "password": p} for n, r, p in entries]))
        chown_tree(pod.root / "tmp", pod.user)

    everyone = [("alice", "Admin", "alice's pw"), ("olga", "Operator", "olga-pw"),
                ("vic", "Viewer", "vic-pw"), ("mallory", "Viewer", "taken")]
    accounts(*everyone)
    path, records = psql_recording_shim(pod)
    upkeep("", ADMIN_ACCOUNTS_FILE=str(accounts_file), POSTGRES_DB="shop", PATH=path)
    log = pod.root / "upkeep.log"
    eventually(lambda: "admin account vic created" in log.read_text(), timeout=30)

    def as_(user: str, password: str, sql: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PG15_BIN / "psql"), "-X", "-tA", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
             "-p", str(pod.port), "-U", user, "-d", "shop", "-c", sql],
            env={"PGPASSWORD": password, "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, check=False)  # fmt: skip

    # Admin: the owner's rights (DDL, all data).
    assert as_("alice", "alice's pw", "CREATE TABLE audit (n int); INSERT INTO orders "
                                      "VALUES (4)").returncode == 0
    # Operator: reads and writes every table, no DDL.
    assert as_("olga", "olga-pw", "INSERT INTO orders VALUES (5)").returncode == 0
    assert "permission denied" in as_("olga", "olga-pw", "CREATE TABLE x (n int)").stderr
    # Viewer: reads only.
    assert as_("vic", "vic-pw", "SELECT count(*) FROM orders").stdout.strip() == "5"
    assert "permission denied" in as_("vic", "vic-pw", "INSERT INTO orders VALUES (6)").stderr
    # A role that was there before is not an admin account: left as it was.
    assert as_("mallory", "kept", "SELECT 1").returncode == 0
    assert "warning: role mallory exists and is not an admin account" in log.read_text()
    assert not any(p in log.read_text() for _, _, p in everyone)
    # The accounts' file is read by psql itself: no password in any psql's arguments.
    arguments = recorded_arguments(records)
    assert f"--set=accounts_file={accounts_file}" in arguments
    assert not any(p in a for a in arguments for _, _, p in everyone), arguments

    # An Operator account reads every session's statement (pg_monitor): polling
    # pg_stat_activity while the accounts change, it never sees a password.
    poll = ("CREATE TEMP TABLE seen (who name, q text); "
            "DO $$ BEGIN FOR i IN 1..40000 LOOP "
            "INSERT INTO seen SELECT usename, query FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND usename = 'postgres'; "
            "PERFORM pg_stat_clear_snapshot(); END LOOP; END $$; "
            "SELECT 'rows ' || count(*) || E'\\n' || coalesce(string_agg(DISTINCT q, E'\\n'), '') "
            "FROM seen")
    poller = subprocess.Popen(
        [str(PG15_BIN / "psql"), "-X", "-tA", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
         "-p", str(pod.port), "-U", "olga", "-d", "shop", "-c", poll],
        env={"PGPASSWORD": "olga-pw", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    rotated = [f"vic-pw-{n}" for n in range(4)]
    for password in rotated:
        accounts(*everyone[:2], ("vic", "Viewer", password), ("mallory", "Viewer", "taken"))

        def taken(password: str = password) -> bool:
            return as_("vic", password, "SELECT 1").returncode == 0

        eventually(taken, timeout=30)
    watched, problems = poller.communicate(timeout=120)
    assert poller.returncode == 0, problems
    rows, _, texts = watched.split("rows ", 1)[1].partition("\n")
    assert int(rows) > 0  # it saw the superuser's sessions while they ran
    assert not any(p in texts for p in [*rotated, "alice's pw", "olga-pw"]), texts

    # Removing an account stops its login, ends its sessions and takes its rights;
    # the role stays (and what it owns).
    # One removed by an older sidecar: no login, its rights kept.
    superuser_query(pod, "CREATE ROLE olde NOLOGIN IN ROLE stackforge_admin_accounts, "
                         "pg_read_all_data")
    held = subprocess.Popen(
        [str(PG15_BIN / "psql"), "-X", "-tA", "-h", "127.0.0.1", "-p", str(pod.port),
         "-U", "vic", "-d", "shop", "-c", "SELECT pg_sleep(120)"],
        env={"PGPASSWORD": rotated[-1], "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    eventually(lambda: superuser_query(
        pod, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'vic'") == "1", timeout=30)
    accounts(*everyone[:2])
    eventually(lambda: "admin account vic removed" in log.read_text(), timeout=30)
    _, ended = held.communicate(timeout=30)
    assert "terminating connection due to administrator command" in ended, ended
    # Each holds the accounts' group alone.
    assert superuser_query(pod, "SELECT string_agg(r.rolname || ':' || g.rolname, ',' "
                                "ORDER BY r.rolname) FROM pg_auth_members m "
                                "JOIN pg_roles r ON r.oid = m.member "
                                "JOIN pg_roles g ON g.oid = m.roleid "
                                "WHERE r.rolname IN ('vic', 'olde')") == (
        "olde:stackforge_admin_accounts,vic:stackforge_admin_accounts")
    refused = as_("vic", rotated[-1], "SELECT 1")
    assert "not permitted to log in" in refused.stderr
    assert superuser_query(pod, "SELECT count(*) FROM pg_roles WHERE rolname = 'vic'") == "1"
    assert as_("alice", "alice's pw", "SELECT count(*) FROM audit").returncode == 0


def _upkeep_follows(pod: Pod, servers: list[Server],
                    upkeep: Callable[..., subprocess.Popen[bytes]], setting: str,
                    file_variable: str, steps: list[tuple[str, str]]) -> str:
    """The upkeep given ``setting``'s file (``file_variable``): for each (written,
    shown) of ``steps`` the file is written and the server soon shows that value,
    each by a reload (the same server process throughout). The upkeep's log."""
    require_peer_login()
    start(pod, servers).wait_ready()
    setting_file = pod.root / "tmp" / setting
    (written, shown), *changes = steps
    setting_file.write_text(written)
    upkeep("", **{file_variable: str(setting_file)})

    def value() -> str:
        return superuser_query(pod, f"SHOW {setting}")

    eventually_equal(value, shown)
    started = superuser_query(pod, "SELECT pg_postmaster_start_time()")
    for written, shown in changes:
        setting_file.write_text(written)
        eventually_equal(value, shown)
    assert superuser_query(pod, "SELECT pg_postmaster_start_time()") == started
    return (pod.root / "upkeep.log").read_text()


def test_upkeep_bounds_the_wal_slots_may_hold_back(
    pod: Pod, servers: list[Server], upkeep: Callable[..., subprocess.Popen[bytes]]
) -> None:
    # A new value (the volume grew) is applied by a reload: the same server process.
    log = _upkeep_follows(pod, servers, upkeep, "max_slot_wal_keep_size",
                          "SLOT_WAL_LIMIT_FILE", [("256", "256MB"), ("2048\n", "2GB")])
    assert "max_slot_wal_keep_size set to 256MB (was -1MB)" in log
    assert log.count("max_slot_wal_keep_size set to") == 2  # once per change, not per pass


def test_upkeep_sets_archive_timeout_without_a_restart_and_resets_it_when_emptied(
    pod: Pod, servers: list[Server], upkeep: Callable[..., subprocess.Popen[bytes]]
) -> None:
    """As a -c argument (outranking ALTER SYSTEM) a policy's new archive_timeout
    restarted the primary; the upkeep now applies the live ConfigMap's value.
    Emptied (archiving turned off): back to the default, no segment switch every 15 s."""
    log = _upkeep_follows(pod, servers, upkeep, "archive_timeout", "ARCHIVE_TIMEOUT_FILE",
                          [("60", "1min"), ("15\n", "15s"), ("", "0")])
    assert "archive_timeout set to 60s (was 0s)" in log
    assert "archive_timeout set to 15s (was 60s)" in log
    assert "archive_timeout reset (was 15s)" in log
    assert log.count("archive_timeout set to") == 2  # once per change, not per pass


# A client address that is not loopback, as a pod's peer has: from the
# benchmarking range (RFC 2544), which no real peer uses, put on lo for the test.
CLIENT_ADDRESS = "198.18.0.77"


@pytest.fixture
def network_address() -> Iterator[str]:
    require_peer_login()  # root: it changes the host's addresses, and puts them back
    subprocess.run(["ip", "address", "add", f"{CLIENT_ADDRESS}/32", "dev", "lo"], check=True)
    try:
        yield CLIENT_ADDRESS
    finally:
        subprocess.run(["ip", "address", "del", f"{CLIENT_ADDRESS}/32", "dev", "lo"],
                       check=False)


def test_upkeep_closes_network_sessions_begun_before_the_isolations_moment(
    pod: Pod, upkeep: Callable[..., subprocess.Popen[bytes]], network_address: str
) -> None:
    """The file holds the moment before which network sessions are closed. A
    session begun after it stays although the file still says isolated: the
    kubelet refreshes it late, and such a session came after the lift."""
    address = network_address
    server = Server(pod, pod.env(), extra_args=["-c", f"listen_addresses=127.0.0.1,{address}"])
    try:
        server.wait_ready()
        isolation = pod.root / "tmp" / "isolated"
        isolation.write_text("")

        def session(host: str) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [str(PG15_BIN / "psql"), "-X", "-h", host, "-p", str(pod.port), "-U", "shop_app",
                 "-d", "shop", "-c", "SELECT pg_sleep(120)"],
                env={"PGPASSWORD": APP_PASSWORD, "PATH": "/usr/bin:/bin"},
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def sleeping() -> int:
            return int(query(pod, "SELECT count(*) FROM pg_stat_activity "
                             "WHERE query = 'SELECT pg_sleep(120)'",
                             user="shop_app", password=APP_PASSWORD, database="shop"))

        before, local = session(address), session("127.0.0.1")
        sessions = [before, local]
        try:
            eventually(lambda: sleeping() == 2, timeout=10)
            upkeep("", ISOLATION_FILE=str(isolation))
            time.sleep(1.5)  # passes while not isolated: nothing is closed
            assert before.poll() is None and local.poll() is None
            # The moment: a whole second after the first session began.
            moment = math.ceil(time.time())
            time.sleep(max(0.0, moment - time.time()) + 0.2)
            after = session(address)
            sessions.append(after)
            eventually(lambda: sleeping() == 3, timeout=10)
            isolation.write_text(f"{moment}\n")
            assert before.wait(30) != 0
            assert before.stderr is not None
            assert "terminating connection" in before.stderr.read().decode()
            # The program logs after pg_terminate_backend returns, which can be after
            # the client has already seen its connection end (seen in CI under load).
            log = pod.root / "upkeep.log"
            eventually(lambda: "isolated: closed 1 network sessions" in log.read_text(),
                       timeout=10)
            time.sleep(1.5)  # more passes with the file as it is
            # The loopback session (the exporter's kind) stays, and so does the
            # network session begun after the moment.
            assert local.poll() is None and after.poll() is None
            assert log.read_text().count("isolated: closed") == 1
            # "all": every network session, whenever it began.
            isolation.write_text("all")
            assert after.wait(30) != 0
            assert local.poll() is None
        finally:
            for process in sessions:
                if process.poll() is None:
                    process.kill()
                process.wait()
    finally:
        server.stop()


def test_upkeep_never_calls_a_function_the_apps_role_made_in_a_built_ins_stead(
    pod: Pod, servers: list[Server], upkeep: Callable[..., subprocess.Popen[bytes]]
) -> None:
    """The app's role owns the public schema of its database: public.format(text,
    text, text) is a closer match than pg_catalog.format(text, VARIADIC "any"),
    and the sidecar's superuser session in that database called it with each
    admin account's password, with the superuser's rights (CVE-2018-1058)."""
    require_peer_login()
    start(pod, servers).wait_ready()
    query(pod, "CREATE TABLE public.caught (args text); "
               "CREATE FUNCTION public.format(text, text, text) RETURNS text "
               "LANGUAGE plpgsql AS $$ BEGIN "
               "INSERT INTO public.caught VALUES (concat_ws(' ', $1, $2, $3, current_user)); "
               "RETURN pg_catalog.format($1, $2, $3); END $$",
          user="shop_app", password=APP_PASSWORD, database="shop")
    accounts_file = pod.root / "tmp" / "accounts.json"
    accounts_file.write_text(json.dumps([{"name": "vic", "role": "Viewer",
                                          "password": "vic-secret"}]))
    chown_tree(pod.root / "tmp", pod.user)
    upkeep("", ADMIN_ACCOUNTS_FILE=str(accounts_file), POSTGRES_DB="shop")
    log = pod.root / "upkeep.log"
    eventually(lambda: "admin account vic created" in log.read_text(), timeout=30)
    caught = query(pod, "SELECT count(*) FROM public.caught", user="shop_app",
                   password=APP_PASSWORD, database="shop")
    assert caught.strip() == "0", query(pod, "SELECT string_agg(args, '; ') FROM public.caught",
                                        user="shop_app", password=APP_PASSWORD, database="shop")
