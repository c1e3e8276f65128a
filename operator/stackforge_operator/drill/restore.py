"""Stream a dump into ``pg_restore``'s stdin, hashing it on the way: no temporary file.

The scratch database comes from libpq's PG* variables alone (``--dbname=``
is empty, so libpq falls back to PGDATABASE): no host, user, database or
password ever shows in ``pg_restore``'s argument list.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import cast

from stackforge_operator.backup.dump_format import Decode, UndecodableDumpError
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


_DONE = object()
# Items read (and decoded) ahead of the one being written: S3's next bytes and
# their decompression overlap pg_restore's reading, which one thread cannot do.
# An item is a stored chunk (4 MiB) or a decoded piece (dump_format's 1 MiB),
# so two of them, the one being written and the decoder's own buffers bound
# the memory, whatever the dump's compression ratio.
READ_AHEAD_CHUNKS = 2


class _StoppedError(Exception):
    """The writer is gone: the reader stops decoding."""


def _read_ahead(chunks: Iterable[bytes], decode: Decode | None,
                ) -> Iterator[tuple[bytes, bytes | UndecodableDumpError]]:
    """(stored bytes, what pg_restore gets) from a reader thread: a stored chunk
    travels with its first decoded piece (b"" with the others), for the hash. Once
    a chunk does not decode, its error stands in for every later chunk's bytes;
    an error reading the chunks is raised here."""
    ready: queue.Queue[object] = queue.Queue(maxsize=READ_AHEAD_CHUNKS)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def decoded(chunk: bytes, failed: UndecodableDumpError | None,
                ) -> UndecodableDumpError | None:
        """Every piece of ``chunk`` put (the chunk with the first); the error it
        ended in, if any. _StoppedError once the writer is gone."""
        unsent = [chunk]

        def emit(piece: bytes) -> None:
            if not put((unsent.pop() if unsent else b"", piece)):
                raise _StoppedError
        if failed is None and decode is not None:
            try:
                decode(chunk, emit)
            except UndecodableDumpError as error:
                failed = error
        if (unsent or failed is not None) and not put(
                (unsent.pop() if unsent else b"", failed or b"")):
            raise _StoppedError
        return failed

    def read() -> None:
        failed: UndecodableDumpError | None = None
        try:
            for chunk in chunks:
                if decode is None:
                    if not put((chunk, chunk)):
                        return
                    continue
                failed = decoded(chunk, failed)
        except _StoppedError:
            return
        except Exception as error:  # S3 failing mid-stream: the writer raises it
            put(error)
            return
        put(_DONE)

    reader = threading.Thread(target=read, name="dump-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            try:
                item = ready.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is _DONE:
                return
            if isinstance(item, Exception):
                raise item
            yield cast("tuple[bytes, bytes | UndecodableDumpError]", item)
    finally:
        stop.set()


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

    def feed(self, chunks: Iterable[bytes], decode: Decode | None = None,
             expected_sha256: str | None = None) -> tuple[int, str, bool]:
        """Write every chunk (through ``decode``, for a dump the runner compressed)
        to pg_restore; returns (bytes, sha256, cut_short) of the stored bytes.

        Everything is hashed even after pg_restore has stopped reading: a
        corrupted object usually breaks the restore too, and only the whole
        hash can tell "the backup is corrupt" from "the restore failed".

        With ``expected_sha256`` the archive's last piece is held back until the
        whole object's hash is known, and given to pg_restore only if it is the
        expected one: without its end a custom archive cannot be finished, so a
        restore in one transaction (into a tenant's database) rolls back rather
        than commit what a corrupt object held. (The hash was compared after
        pg_restore had committed.)
        """
        assert self.proc is not None and self.proc.stdin is not None
        sink = self.proc.stdin
        digest = hashlib.sha256()
        size = 0
        open_ = True
        held = b""

        def write(data: bytes) -> bool:
            try:
                sink.write(data)
            except BrokenPipeError:
                log.warning("pg_restore stopped reading after %d bytes", size)
                return False
            return True

        for chunk, data in _read_ahead(chunks, decode):
            digest.update(chunk)
            size += len(chunk)
            if not open_:
                continue
            if isinstance(data, UndecodableDumpError):
                # pg_restore gets a cut archive and fails; the hash goes on.
                open_ = False
                log.warning("the dump stops decoding after %d bytes: %s", size, data)
                continue
            if expected_sha256 is None:
                open_ = write(data)
            elif data:
                open_ = write(held) if held else True
                held = data
        sha256 = digest.hexdigest()
        if open_ and held:
            if sha256 == expected_sha256:
                open_ = write(held)
            else:
                open_ = False
                log.warning("the dump's sha256 is %s, not %s: its end is withheld, so "
                            "pg_restore ends without it", sha256, expected_sha256)
        with contextlib.suppress(BrokenPipeError):
            sink.close()
        return size, sha256, not open_

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
    keep_owners: bool = False, decode: Decode | None = None,
    expected_sha256: str | None = None,
) -> StreamResult:
    """Restore the archive ``chunks`` yields (``decode``: dump_format.decoder) into
    the database libpq's env names; with ``expected_sha256``, its end only if the
    object has that hash (PgRestore.feed)."""
    started = time.monotonic()
    restore = PgRestore(pg_restore, env, keep_owners=keep_owners)
    restore.start()
    try:
        size, sha256, cut_short = restore.feed(chunks, decode, expected_sha256)
        code, stderr = restore.wait()
    finally:
        # An S3 error or SIGTERM mid-stream: pg_restore must not outlive us.
        restore.kill()
    return StreamResult(size, sha256, code, stderr, time.monotonic() - started, cut_short)
