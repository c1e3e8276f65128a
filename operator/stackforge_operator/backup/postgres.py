"""pg_dump and psql as child processes, with the connection only in the environment.

libpq reads PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE by itself, so
no argument list built here ever names a host, a user or a password: what
``ps`` or ``/proc/<pid>/cmdline`` shows is safe to show.

The row counts in the manifest are taken in the very snapshot pg_dump dumps:
a psql session opens a repeatable-read transaction, exports its snapshot,
counts, and stays open until pg_dump has finished (``--snapshot``).  A
restore of the dump must therefore reproduce the counts exactly, however
busy the database was during the backup.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from stackforge_operator.backup.failures import BackupFailure, database_failure

APPLICATION_NAME = "stackforge-backup"
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux
PIPE_SIZE = 1024 * 1024
DEFAULT_CONNECT_TIMEOUT = "15"

# Each statement answers with exactly one line of JSON, so the session can be
# driven over pipes without parsing psql's output further.
_SNAPSHOT_QUERY = r"""
SELECT json_build_object(
  'snapshot', pg_export_snapshot(),
  'serverVersion', current_setting('server_version'),
  'serverVersionNum', current_setting('server_version_num')::int,
  'database', current_database(),
  -- The recovery point a drill measures RPO from: this statement started
  -- before its snapshot was taken, so the time errs on the early (honest) side.
  'snapshotTime', statement_timestamp(),
  -- Which database this is: initdb's identifier, kept by physical copies and
  -- new after any initdb. Retention never lets the dumps of a database made
  -- afresh (a lost volume, a tenant made again) push out the old one's.
  'systemIdentifier', (SELECT system_identifier::text FROM pg_control_system()),
  -- The roles the dump's ownerships and grants name (restoring it with them
  -- needs them to exist): the dump itself lists them nowhere it can be read
  -- without reading all of it.
  'roles', (SELECT coalesce(json_agg(r.rolname ORDER BY r.rolname), '[]'::json)
            FROM pg_roles r WHERE r.rolname !~ '^pg_' AND r.oid IN (
              SELECT relowner FROM pg_class
              UNION SELECT nspowner FROM pg_namespace
              UNION SELECT proowner FROM pg_proc
              UNION SELECT typowner FROM pg_type
              UNION SELECT defaclrole FROM pg_default_acl
              UNION SELECT (aclexplode(relacl)).grantee FROM pg_class
              UNION SELECT (aclexplode(nspacl)).grantee FROM pg_namespace
              UNION SELECT (aclexplode(proacl)).grantee FROM pg_proc
              UNION SELECT (aclexplode(typacl)).grantee FROM pg_type
              UNION SELECT (aclexplode(defaclacl)).grantee FROM pg_default_acl))
);
"""
# An exact count of every user table; query_to_xml runs each count inside this
# transaction, so inside the exported snapshot.  The drill runs the same query
# on the restored database, so both sides count exactly the same way.
ROW_COUNT_QUERY = r"""
SELECT coalesce((
  SELECT json_object_agg(n.nspname || '.' || c.relname, (xpath('/row/c/text()',
    query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname),
                 false, true, '')))[1]::text::bigint ORDER BY n.nspname, c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
), '{}'::json);
"""


def find_tool(name: str, bin_dir: Path | None = None) -> str:
    """``bin_dir/name`` if given, else the first on PATH."""
    if bin_dir is not None:
        return str(bin_dir / name)
    found = shutil.which(name)
    if found is None:
        raise BackupFailure("ToolMissing", f"{name} not found on PATH")
    return found


def tool_version(binary: str) -> str:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackupFailure("ToolMissing", f"{binary} --version: {exc}") from exc
    return out.stdout.strip()


def widen_pipe(pipe: IO[bytes]) -> None:
    # A 64 KiB pipe stalls pg_dump whenever the reader is briefly busy (GIL,
    # a part being handed over); 1 MiB rides that out. Best effort: the
    # system limit (fs.pipe-max-size) may be lower.
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe.fileno(), F_SETPIPE_SZ, PIPE_SIZE)


# The superuser's sessions in a database the tenant owns search the system
# catalog alone: a function or operator the owner made in a schema of theirs
# (public is the database owner's) could otherwise stand in for a built-in one
# that the session calls with arguments not yet typed, and run with the
# superuser's rights: CVE-2018-1058's pattern, public.format(text, name, name)
# being a closer match than pg_catalog.format(text, VARIADIC "any"). Their SQL
# names every user object with its schema. (pg_dump and the dumps it writes
# set their own path the same way.)
CATALOG_ONLY_OPTION = "-c search_path=pg_catalog"


def privileged_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a superuser's session in a database the tenant owns."""
    options = [env.get("PGOPTIONS", ""), CATALOG_ONLY_OPTION]
    return {**env, "PGOPTIONS": " ".join(o for o in options if o)}


def libpq_env(base: Mapping[str, str], application: str) -> dict[str, str]:
    """The child's environment: ours plus defaults that keep it from hanging or prompting."""
    env = dict(base)
    env.setdefault("PGCONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT)
    env["PGAPPNAME"] = application
    return env


class StderrTail:
    """Drains a pipe in a thread, keeping the last lines (a full pipe would stall the child)."""

    def __init__(self, pipe: IO[bytes], keep: int = 20) -> None:
        self._lines: deque[str] = deque(maxlen=keep)
        self._thread = threading.Thread(target=self._drain, args=(pipe,), daemon=True)
        self._thread.start()

    def _drain(self, pipe: IO[bytes]) -> None:
        for line in pipe:
            self._lines.append(line.decode(errors="replace").rstrip())

    def text(self, timeout: float = 5.0) -> str:
        self._thread.join(timeout)
        return "\n".join(self._lines)


def start_tool(
    argv: Sequence[str], env: Mapping[str, str], *, stdin: int, stdout: int, keep: int = 20,
) -> tuple[subprocess.Popen[bytes], StderrTail]:
    """Start a PostgreSQL client with its stderr drained into a tail.

    Every client (psql, pg_dump, pg_restore) starts this way, so a missing or
    unrunnable binary always fails the same way: ToolMissing, naming the tool.
    """
    try:
        proc = subprocess.Popen(
            list(argv), stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=dict(env))
    except OSError as exc:
        raise BackupFailure("ToolMissing", f"starting {Path(argv[0]).name}: {exc}") from exc
    assert proc.stderr is not None
    return proc, StderrTail(proc.stderr, keep=keep)


@dataclass(frozen=True)
class SnapshotInfo:
    snapshot: str
    server_version: str
    server_version_num: int
    database: str
    snapshot_time: datetime | None = None
    roles: tuple[str, ...] = ()
    system_identifier: str | None = None


class SnapshotSession:
    """A psql session holding an exported snapshot open (context manager).

    ``open`` exports the snapshot; ``start_counting`` sends the row-count
    query and ``row_counts`` collects its answer, so the counting runs while
    pg_dump streams (both read the same snapshot, so the order is free).
    """

    def __init__(
        self,
        psql: str,
        env: Mapping[str, str],
        lock_timeout_ms: int,
    ) -> None:
        self._argv = [psql, "--no-psqlrc", "--quiet", "--no-align", "--tuples-only",
                      "--no-password", "--set=ON_ERROR_STOP=1"]
        self._env = privileged_env(libpq_env(env, f"{APPLICATION_NAME}/psql"))
        self._lock_timeout_ms = lock_timeout_ms
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: StderrTail | None = None

    @property
    def argv(self) -> list[str]:
        return list(self._argv)

    def __enter__(self) -> SnapshotInfo:
        return self.open()

    def open(self) -> SnapshotInfo:
        """Start psql and export a snapshot; the session stays open until ``close``."""
        self._proc, self._stderr = start_tool(
            self._argv, self._env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._send(
            f"SET lock_timeout = {int(self._lock_timeout_ms)};\n"
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n"
            + _SNAPSHOT_QUERY
        )
        data = self._answer("connecting to the database")
        return SnapshotInfo(
            snapshot=data["snapshot"],
            server_version=data["serverVersion"],
            server_version_num=data["serverVersionNum"],
            database=data["database"],
            snapshot_time=(
                datetime.fromisoformat(data["snapshotTime"]) if data.get("snapshotTime") else None
            ),
            roles=tuple(str(r) for r in data.get("roles") or ()),
            system_identifier=data.get("systemIdentifier"),
        )

    def start_counting(self) -> None:
        self._send(ROW_COUNT_QUERY)

    def row_counts(self) -> dict[str, int]:
        data = self._answer("counting rows")
        return {k: int(v) for k, v in data.items()}

    def failure(self, doing: str) -> BackupFailure | None:
        """Why the session ended, if it has or does within a moment (psql stops at
        the first error; a failure seen elsewhere may be only its consequence)."""
        assert self._proc is not None and self._stderr is not None
        try:
            code = self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return None  # still open: not why anything failed
        return None if code == 0 else database_failure(self._stderr.text(), doing)

    def _send(self, sql: str) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(sql.encode())
            self._proc.stdin.flush()
        except BrokenPipeError:
            pass  # psql already exited; _answer reports why from its stderr

    def _answer(self, doing: str) -> Any:
        assert self._proc is not None and self._proc.stdout is not None
        assert self._stderr is not None
        # With ON_ERROR_STOP psql exits on the first error, so this read ends
        # either with the line or with EOF; it cannot wait forever.
        line = self._proc.stdout.readline()
        if not line.strip():
            self._proc.wait(timeout=30)
            raise database_failure(self._stderr.text(), doing)
        return json.loads(line)

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin and proc.poll() is None:
                proc.stdin.write(b"COMMIT;\n\\q\n")
                proc.stdin.close()
            proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()

    def abandon(self) -> None:
        """End the session at once, after a failure. Its transaction only read
        (READ ONLY), so there is nothing to commit; and close() waits for psql to
        reach the COMMIT behind a row count still running, up to 30 s: a runner
        stopped by the kubelet (30 s grace) was killed before it aborted its
        upload or said why it stopped."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()


class PgDump:
    """``pg_dump --format=custom`` writing to a pipe, started in the given snapshot."""

    def __init__(
        self,
        pg_dump: str,
        env: Mapping[str, str],
        *,
        snapshot: str | None,
        lock_timeout_ms: int,
        compress: int | None = None,
    ) -> None:
        argv = [pg_dump, "--format=custom", "--no-password",
                f"--lock-wait-timeout={int(lock_timeout_ms)}"]
        if snapshot:
            argv.append(f"--snapshot={snapshot}")
        if compress is not None:
            argv.append(f"--compress={int(compress)}")
        self.argv = argv
        self._env = libpq_env(env, f"{APPLICATION_NAME}/pg_dump")
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: StderrTail | None = None

    def start(self) -> IO[bytes]:
        self.proc, self._stderr = start_tool(
            self.argv, self._env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        widen_pipe(self.proc.stdout)
        return self.proc.stdout

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def wait(self, timeout: float = 60.0) -> None:
        """Raise PgDumpFailed unless pg_dump exited 0."""
        assert self.proc is not None and self._stderr is not None
        code = self.proc.wait(timeout=timeout)
        if code != 0:
            stderr = self._stderr.text()
            raise BackupFailure("PgDumpFailed", f"pg_dump exited {code}: {stderr}".strip())

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

