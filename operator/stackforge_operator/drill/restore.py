"""Stream a dump into ``pg_restore``'s stdin, hashing it on the way: no temporary file.

The scratch database comes from libpq's PG* variables alone (``--dbname=``
is empty, so libpq falls back to PGDATABASE): no host, user, database or
password ever shows in ``pg_restore``'s argument list.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from stackforge_operator.backup.dump_format import UndecodableDumpError
from stackforge_operator.backup.postgres import StderrTail, libpq_env, start_tool, widen_pipe

log = logging.getLogger("stackforge_operator.drill")

APPLICATION_NAME = "stackforge-drill"
STDERR_LINES = 30


@dataclass(frozen=True)
class StreamResult:
    """What went through the pipe, and how pg_restore ended."""

    size_bytes: int
    sha256: str
    exit_code: int
    stderr_tail: str
    seconds: float
    # pg_restore stopped reading before the end: it failed, or it had all it
    # needed (the bytes it skipped are still covered by the sha256).
    cut_short: bool = False

    @property
    def restored(self) -> bool:
        return self.exit_code == 0


def pg_restore_argv(pg_restore: str, *, keep_owners: bool = False) -> list[str]:
    """--exit-on-error: a restore that skipped an object must not pass as a restore.

    A drill restores with --no-owner/--no-privileges: the scratch database has
    none of the tenant's roles, and a drill must not need them. A tenant's
    database (``keep_owners``) keeps who owns what and who may do what, in
    one transaction: a restore that fails leaves the database as it was, so
    it can simply be run again.
    """
    if keep_owners:
        return [pg_restore, "--format=custom", "--single-transaction", "--exit-on-error",
                "--no-password", "--dbname="]
    return [pg_restore, "--format=custom", "--no-owner", "--no-privileges",
            "--exit-on-error", "--no-password", "--dbname="]


class PgRestore:
    """One ``pg_restore`` reading the archive from stdin."""

    def __init__(self, pg_restore: str, env: Mapping[str, str], *,
                 keep_owners: bool = False) -> None:
        self.argv = pg_restore_argv(pg_restore, keep_owners=keep_owners)
        self._env = libpq_env(env, f"{APPLICATION_NAME}/pg_restore")
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: StderrTail | None = None

    def start(self) -> None:
        self.proc, self._stderr = start_tool(
            self.argv, self._env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            keep=STDERR_LINES)
        assert self.proc.stdin is not None
        widen_pipe(self.proc.stdin)

    def feed(self, chunks: Iterable[bytes],
             decode: Callable[[bytes], bytes] | None = None) -> tuple[int, str, bool]:
        """Write every chunk (through ``decode``, for a dump the runner compressed)
        to pg_restore; returns (bytes, sha256, cut_short) of the stored bytes.

        Everything is hashed even after pg_restore has stopped reading: a
        corrupted object usually breaks the restore too, and only the whole
        hash can tell "the backup is corrupt" from "the restore failed".
        """
        assert self.proc is not None and self.proc.stdin is not None
        sink = self.proc.stdin
        digest = hashlib.sha256()
        size = 0
        open_ = True
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            if open_:
                try:
                    sink.write(decode(chunk) if decode is not None else chunk)
                except BrokenPipeError:
                    open_ = False
                    log.warning("pg_restore stopped reading after %d bytes", size)
                except UndecodableDumpError as error:
                    # pg_restore gets a cut archive and fails; the hash goes on.
                    open_ = False
                    log.warning("the dump stops decoding after %d bytes: %s", size, error)
        with contextlib.suppress(BrokenPipeError):
            sink.close()
        return size, digest.hexdigest(), not open_

    def wait(self) -> tuple[int, str]:
        assert self.proc is not None and self._stderr is not None
        code = self.proc.wait()
        return code, self._stderr.text()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def stream_restore(
    chunks: Iterable[bytes], pg_restore: str, env: Mapping[str, str], *,
    keep_owners: bool = False, decode: Callable[[bytes], bytes] | None = None,
) -> StreamResult:
    """Restore the archive ``chunks`` yields (``decode``: dump_format.decoder) into
    the database libpq's env names."""
    started = time.monotonic()
    restore = PgRestore(pg_restore, env, keep_owners=keep_owners)
    restore.start()
    try:
        size, sha256, cut_short = restore.feed(chunks, decode)
        code, stderr = restore.wait()
    finally:
        # An S3 error or SIGTERM mid-stream: pg_restore must not outlive us.
        restore.kill()
    return StreamResult(size, sha256, code, stderr, time.monotonic() - started, cut_short)
