"""The PostgreSQL image's archiving programs, run from the checkout with stand-ins for
the tools they call (pgBackRest and psql themselves run in tests/backup/
test_pgbackrest_s3.py and, in the pod, tests/realnode/test_archiving.py):

- ``stackforge-pgbackrest`` runs pgBackRest in the repository of the database's
  incarnation, and refuses to run without one;
- ``stackforge-archiver`` retries the stanza until it exists, then writes a
  heartbeat record every HEARTBEAT_SECONDS, and ends at once on TERM;
- its heartbeat rows and the exporter's query of them say how far the archive
  reaches: that one runs against a loopback PostgreSQL server whose
  archive_command the test can make fail (a bucket that cannot be reached).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from stackforge_operator.builders.exporters import POSTGRES_EXPORTER_QUERIES
from tests.images.postgres_pods import PG15_BIN, program
from tests.support.postgres_server import PostgresServer

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


def _archiver(tmp_path: Path, bin_dir: Path, **env: str) -> subprocess.Popen[bytes]:
    """The archiver of stanza "acme", its tools from ``bin_dir`` first, its output in
    ``tmp_path``/archiver.log, ``env`` beside that."""
    with (tmp_path / "archiver.log").open("wb") as out:
        return subprocess.Popen(
            [str(ARCHIVER)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "PGBACKREST_STANZA": "acme", **env})


def test_the_archiver_retries_the_stanza_then_beats_and_ends_on_term(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    # The stanza fails once (S3 not reachable yet), then exists.
    _tool(bin_dir, "stackforge-pgbackrest",
          f'echo "pgbackrest $*" >>{calls}\n'
          f'[ -e {tmp_path}/tried ] || {{ touch {tmp_path}/tried; exit 1; }}\n')
    _tool(bin_dir, "psql", f'echo "psql $* $(tr "\\n" " ")" >>{calls}\n')
    log = tmp_path / "archiver.log"
    archiver = _archiver(tmp_path, bin_dir, RETRY_SECONDS="1", HEARTBEAT_SECONDS="1")
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


def test_the_archivers_beat_follows_the_servers_archive_timeout(tmp_path: Path) -> None:
    """Half the server's archive_timeout, read at each beat: as an env of the
    container (HEARTBEAT_SECONDS) a policy's new timeout restarted the primary."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _tool(bin_dir, "stackforge-pgbackrest", "exit 0\n")
    setting = tmp_path / "archive_timeout"
    setting.write_text("10\n")
    # The server's answer to the beat: its archive_timeout in seconds, last.
    _tool(bin_dir, "psql", f"cat >/dev/null\ncat {setting}\n")
    log = tmp_path / "archiver.log"
    archiver = _archiver(tmp_path, bin_dir, POLL_SECONDS="0.2")
    try:
        def said(line: str, times: int = 1) -> bool:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if log.read_text().count(line) >= times:
                    return True
                time.sleep(0.2)
            return False

        assert said("heartbeat every 5s"), log.read_text()  # half of 10 s
        setting.write_text("14\n")  # a new timeout, set by the upkeep with a reload
        assert said("heartbeat every 7s"), log.read_text()
        setting.write_text("4\n")
        assert said("heartbeat every 5s", times=2), log.read_text()  # never below 5 s
    finally:
        archiver.terminate()
        try:
            archiver.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(archiver.pid, signal.SIGKILL)
    assert log.read_text().count("heartbeat every") == 3, log.read_text()


def _start_archiver(tmp_path: Path, bin_dir: Path, request_file: Path) -> subprocess.Popen[bytes]:
    return _archiver(tmp_path, bin_dir, RETRY_SECONDS="1", HEARTBEAT_SECONDS="1",
                     POLL_SECONDS="0.2", BACKUP_RETRY_SECONDS="2",
                     BACKUP_ARCHIVE_TIMEOUT_SECONDS="900", REQUEST_FILE=str(request_file),
                     STATE_DIR=str(tmp_path / "state"))


def test_the_archiver_runs_each_backup_request_once_and_beats_meanwhile(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "state").mkdir()
    calls = tmp_path / "calls"
    release = tmp_path / "release"
    # The backup "runs" until the test releases it; its exit status is the file's content.
    _tool(bin_dir, "stackforge-pgbackrest",
          f'echo "pgbackrest $*" >>{calls}\n'
          f'[ "$1" = backup ] || exit 0\n'
          f'while [ ! -e {release} ]; do sleep 0.1; done\n'
          f'exit "$(cat {release})"\n')
    _tool(bin_dir, "psql", f'echo "psql $* $(tr "\\n" " ")" >>{calls}\n')
    request = tmp_path / "request"
    request.write_text("")  # no annotation: the downward API's file is empty

    def lines() -> list[str]:
        return calls.read_text().splitlines() if calls.exists() else []

    def wait_for(check: Any, what: str) -> None:
        deadline = time.monotonic() + 20
        while not check():
            assert time.monotonic() < deadline, f"{what}: {lines()}"
            time.sleep(0.1)

    archiver = _start_archiver(tmp_path, bin_dir, request)
    try:
        wait_for(lambda: any(line.startswith("psql") for line in lines()), "a heartbeat")
        request.write_text("20261130T221505Z diff count 3")
        wait_for(lambda: any("backup" in line for line in lines()), "the backup")
        [backup] = [line for line in lines() if " backup " in f"{line} "]
        assert backup == ("pgbackrest backup --type=diff --start-fast --archive-timeout=900 "
                          "--repo1-retention-full-type=count --repo1-retention-full=3 "
                          "--annotation=stackforge-request=20261130T221505Z")
        # The heartbeat goes on while the backup runs (it may take hours).
        beats = sum(line.startswith("psql") for line in lines())
        wait_for(lambda: sum(line.startswith("psql") for line in lines()) >= beats + 2,
                 "heartbeats during the backup")
        release.write_text("0")
        wait_for(lambda: "request 20261130T221505Z is complete" in
                 (tmp_path / "archiver.log").read_text(), "the result")
        # The same request is not run again; a new one is, and its failure is logged.
        time.sleep(1)
        release.unlink()
        assert sum(" backup " in f"{line} " for line in lines()) == 1
        request.write_text("20261130T231505Z full time 7")
        wait_for(lambda: sum(" backup " in f"{line} " for line in lines()) == 2, "the second")
        release.write_text("1")
        wait_for(lambda: "request 20261130T231505Z failed (pgBackRest exit status 1); "
                 "retrying in 2s" in (tmp_path / "archiver.log").read_text(), "the failure")
        # A failed request is run again after its pause, until it succeeds.
        failed_at = time.monotonic()
        wait_for(lambda: sum(" backup " in f"{line} " for line in lines()) == 3, "the retry")
        assert time.monotonic() - failed_at > 1
        release.write_text("0")
        wait_for(lambda: "request 20261130T231505Z is complete" in
                 (tmp_path / "archiver.log").read_text(), "the retry's success")
        done = sum(" backup " in f"{line} " for line in lines())
        # A request that is not one is logged and skipped, not run.
        request.write_text("20261201T000000Z weekly count 3")
        wait_for(lambda: "ignoring the backup request" in
                 (tmp_path / "archiver.log").read_text(), "the refusal")
        time.sleep(3)
        assert sum(" backup " in f"{line} " for line in lines()) == done
        # A restart of the container (its state directory stays) runs nothing again.
        os.kill(archiver.pid, signal.SIGTERM)
        assert archiver.wait(10) == 0
        request.write_text("20261130T231505Z full time 7")
        archiver = _start_archiver(tmp_path, bin_dir, request)
        wait_for(lambda: sum(line.startswith("pgbackrest stanza-create") for line in lines())
                 == 2, "the restart")
        time.sleep(1)
        assert sum(" backup " in f"{line} " for line in lines()) == done
    finally:
        if archiver.poll() is None:
            os.killpg(archiver.pid, signal.SIGKILL)


def test_term_stops_a_running_backup_too(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "state").mkdir()
    pid_file = tmp_path / "backup.pid"
    _tool(bin_dir, "stackforge-pgbackrest",
          f'[ "$1" = backup ] || exit 0\necho $$ >{pid_file}\nexec sleep 600\n')
    _tool(bin_dir, "psql", "")
    request = tmp_path / "request"
    request.write_text("20261130T221505Z full count 1")
    archiver = _start_archiver(tmp_path, bin_dir, request)
    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert time.monotonic() < deadline, (tmp_path / "archiver.log").read_text()
            time.sleep(0.1)
        backup = int(pid_file.read_text())
        os.kill(archiver.pid, signal.SIGTERM)
        assert archiver.wait(10) == 0
        deadline = time.monotonic() + 5
        while Path(f"/proc/{backup}").exists() and "Z" not in _state(backup):
            assert time.monotonic() < deadline, "the backup outlived the archiver"
            time.sleep(0.1)
    finally:
        if archiver.poll() is None:
            os.killpg(archiver.pid, signal.SIGKILL)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"


def _archived_through(server: PostgresServer) -> float:
    """The exporter's figure, by the exporter's own query."""
    query = yaml.safe_load(POSTGRES_EXPORTER_QUERIES)["stackforge_archive"]["query"]
    return float(server.psql(query + ";").strip())


def _server_now(server: PostgresServer) -> float:
    return float(server.psql("SELECT extract(epoch FROM now());").strip())


def test_the_beats_say_how_far_the_archive_reaches_and_stop_at_an_outage(
        tmp_path: Path) -> None:
    # The bucket stand-in: a directory the server's user can write (pytest's
    # tmp_path is root's alone), unreachable while the outage file exists.
    server = PostgresServer(bin_dir=PG15_BIN)
    archive = server.root / "archive"
    outage = server.root / "outage"
    server.settings.update({"archive_mode": "on",
                            "archive_command": f"test ! -e {outage} && cp %p {archive}/%f"})
    server.start()
    archive.mkdir()
    os.chown(archive, server.os_user.uid, server.os_user.gid)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _tool(bin_dir, "stackforge-pgbackrest", "exit 0\n")
    archiver = None
    try:
        # No table yet (a tenant without archiving): the figure is 0, not an error.
        assert _archived_through(server) == 0
        archiver = subprocess.Popen(
            [str(ARCHIVER)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
            env={"PATH": f"{bin_dir}:{server.bin_dir}:/usr/bin:/bin", "PGBACKREST_STANZA": "t",
                 "PGHOST": str(server.socket_dir), "PGPORT": str(server.port),
                 "HEARTBEAT_SECONDS": "1", "POLL_SECONDS": "0.2"})

        def switch_until(check: Any, what: str) -> float:
            deadline = time.monotonic() + 30
            while True:
                server.psql("SELECT pg_switch_wal();")
                time.sleep(0.5)
                through = _archived_through(server)
                if check(through):
                    return through
                if time.monotonic() > deadline:
                    archiver_view = server.psql("SELECT * FROM pg_stat_archiver;")
                    raise AssertionError(f"{what}: {through}; archiver: {archiver_view}")

        before = _server_now(server)
        first = switch_until(lambda v: v > before, "a beat archived")
        assert first <= _server_now(server)

        outage.touch()
        # The moment the bucket went: from here on nothing reaches it.
        cut = _server_now(server)
        deadline = time.monotonic() + 30
        while float(server.psql("SELECT count(*) FROM stackforge.heartbeat "
                                "WHERE beat > to_timestamp(:'after'::float8);",
                                variables={"after": str(cut + 3)})) < 1:
            assert time.monotonic() < deadline, "no beat after the cut"
            server.psql("SELECT pg_switch_wal();")
            time.sleep(0.5)
        # Beats went on, in segments closed and waiting to be archived ...
        waiting = int(server.psql(
            "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready';"))
        assert waiting >= 2
        # ... and the figure stays before the cut: a restore to any moment after
        # it would not find its WAL in the archive.
        during = _archived_through(server)
        assert first <= during < cut, (first, during, cut)

        outage.unlink()
        back = _server_now(server)
        after = switch_until(lambda v: v > back, "the queue archived")
        # Everything the figure claims is in the archive: the newest beat it
        # names sits in a segment the archive holds.
        segment = server.psql(
            "SELECT segment FROM stackforge.heartbeat "
            "WHERE abs(extract(epoch FROM beat) - :'after'::float8) < 0.00001;",
            variables={"after": repr(after)}).strip()
        assert (archive / segment).exists(), (segment, sorted(p.name for p in archive.iterdir()))
        assert datetime.fromtimestamp(after, UTC) <= datetime.now(UTC)
    finally:
        if archiver is not None and archiver.poll() is None:
            os.killpg(archiver.pid, signal.SIGKILL)
        server.stop()


def test_a_locked_heartbeat_table_holds_the_archiver_seconds_not_for_ever(
        tmp_path: Path) -> None:
    """A session holding a lock on the beats' table (an Operator account may take
    one) made the beat's INSERT wait for ever, and with it the archiver's loop:
    no beats, no backup requests, and TERM not heard."""
    server = PostgresServer(bin_dir=PG15_BIN)
    server.start()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _tool(bin_dir, "stackforge-pgbackrest", "exit 0\n")
    errors = tmp_path / "archiver.err"
    archiver = locker = None
    try:
        with errors.open("wb") as sink:
            archiver = subprocess.Popen(
                [str(ARCHIVER)], stdout=subprocess.DEVNULL, stderr=sink,
                start_new_session=True,
                env={"PATH": f"{bin_dir}:{server.bin_dir}:/usr/bin:/bin",
                     "PGBACKREST_STANZA": "t", "PGHOST": str(server.socket_dir),
                     "PGPORT": str(server.port), "HEARTBEAT_SECONDS": "1",
                     "POLL_SECONDS": "0.2"})

        def beats() -> int:
            return int(server.psql("SELECT count(*) FROM stackforge.heartbeat;")
                       if server.psql("SELECT to_regclass('stackforge.heartbeat') IS NOT NULL;")
                       .strip() == "t" else "0")

        deadline = time.monotonic() + 30
        while beats() < 1:
            assert time.monotonic() < deadline, "no beat"
            time.sleep(0.2)
        locker = subprocess.Popen(
            [str(server.bin_dir / "psql"), "--no-psqlrc", "-h", str(server.socket_dir),
             "-p", str(server.port), "-U", "postgres", "-d", "postgres", "-c",
             "BEGIN; LOCK TABLE stackforge.heartbeat; SELECT pg_sleep(60);"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin"}, start_new_session=True)
        deadline = time.monotonic() + 20
        while b"could not write the heartbeat" not in errors.read_bytes():
            assert time.monotonic() < deadline, errors.read_text()
            time.sleep(0.2)
        # The loop goes on: TERM ends it at once, lock or not.
        archiver.send_signal(signal.SIGTERM)
        assert archiver.wait(10) == 0
    finally:
        for process in (archiver, locker):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        server.stop()


def _named_incarnation(server: PostgresServer) -> tuple[str, float]:
    """The exporter's incarnation sample, by the exporter's own query: label and value."""
    query = yaml.safe_load(POSTGRES_EXPORTER_QUERIES)["stackforge_incarnation"]["query"]
    label, value = server.psql(query + ";").strip().split("|")
    return label, float(value)


def test_the_beats_name_the_incarnation_the_server_archives_into(tmp_path: Path) -> None:
    """The operator reads the archive of the incarnation the primary writes, not of
    the newest one: the exporter says which, from the archiver's beats. A table
    an older image made (no column) is given one."""
    name = "7412345678901234567-20261130T120000Z"
    incarnation = tmp_path / "stackforge-incarnation"
    incarnation.write_text(name + "\n")
    server = PostgresServer(bin_dir=PG15_BIN)
    server.start()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _tool(bin_dir, "stackforge-pgbackrest", "exit 0\n")
    archiver = None
    try:
        # No table (a tenant without archiving): nothing named, and no error.
        assert _named_incarnation(server) == ("", 0)
        server.psql("CREATE SCHEMA stackforge; CREATE TABLE stackforge.heartbeat "
                    "(beat timestamptz PRIMARY KEY, segment text NOT NULL);"
                    "INSERT INTO stackforge.heartbeat VALUES (now() - interval '1 day', 'x');")
        assert _named_incarnation(server) == ("", 0)  # the old table: no column yet
        started = float(server.psql("SELECT extract(epoch FROM now());").strip())
        archiver = subprocess.Popen(
            [str(ARCHIVER)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
            env={"PATH": f"{bin_dir}:{server.bin_dir}:/usr/bin:/bin", "PGBACKREST_STANZA": "t",
                 "PGHOST": str(server.socket_dir), "PGPORT": str(server.port),
                 "STACKFORGE_INCARNATION_FILE": str(incarnation),
                 "HEARTBEAT_SECONDS": "1", "POLL_SECONDS": "0.2"})
        deadline = time.monotonic() + 30
        while (found := _named_incarnation(server))[0] != name:
            assert time.monotonic() < deadline, f"no beat named the incarnation: {found}"
            time.sleep(0.3)
        assert found[1] >= started
        # A restored database's own archiver names its own, as soon as it beats.
        incarnation.write_text("7412345678901234567-20261207T000000Z\n")
        deadline = time.monotonic() + 30
        while _named_incarnation(server)[0] != "7412345678901234567-20261207T000000Z":
            assert time.monotonic() < deadline, "the new name was never beaten"
            time.sleep(0.3)
        # A file that holds no name: rows name none, and the newest named stays.
        incarnation.write_text("not a name; DROP TABLE x\n")
        time.sleep(2.5)
        assert _named_incarnation(server)[0] == "7412345678901234567-20261207T000000Z"
        assert server.psql("SELECT count(*) FROM stackforge.heartbeat "
                           "WHERE incarnation IS NULL AND segment <> 'x';").strip() != "0"
    finally:
        if archiver is not None and archiver.poll() is None:
            os.killpg(archiver.pid, signal.SIGTERM)
            archiver.wait(timeout=30)
        server.stop()
