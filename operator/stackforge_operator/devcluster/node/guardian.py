"""Puts the host back when the process that started a real node dies without doing so.

The node's own programs die with their launcher (``PR_SET_PDEATHSIG``), but
what they started does not: containerd's shims and every container are
re-parented to init, and the bridge, the netfilter chains, sysctls, network
namespaces, mounts and cgroups stay. A launcher killed (SIGKILL, an xdist
worker ended by its controller, a session stopped) left the host changed, and
the next real node refused to start on the bridge it found; removing the bridge
by hand made the next snapshot record the rest as the host's own.

The guardian is a process of its own session, started once the host is
recorded, that only waits. Its standard input is a pipe whose write end only
the launcher holds: the recorded state comes first, then either the word that
releases it (the launcher restored the host itself) or end-of-file, which means
the launcher is gone. Then it kills what the node left and restores the host
from the recorded state (restoring twice is harmless: a launcher killed in the
middle of its own restore is covered too), and logs what still differs. Its
command line names nothing of the node's directory, so the node's own clean-up,
which kills every process mentioning it, leaves the guardian alone.

It also holds the host's real-node lock (:func:`hold_host`) that its launcher
took: a node started while a killed one's host is being restored would record
the leftovers as the host's own, and have its own rules wiped by that restore.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from stackforge_operator.devcluster import build_cache
from stackforge_operator.devcluster.node import hoststate

RELEASED = b"released"
GUARDING = "guarding the host"
_LENGTH = struct.Struct(">Q")
ACKNOWLEDGE_SECONDS = 15.0


def host_lock_path() -> Path:
    """One real node per host at a time, its host restored before the next starts:
    a lock in the project's own cache directory (beside its builds), not in /run."""
    return build_cache.cache_root().parent / "realnode.lock"


class HostBusyError(Exception):
    """Another real node runs on this host, or a killed one's host is being restored."""


def hold_host(lock_path: Path | None = None) -> int:
    """The host's real-node lock, taken (an open descriptor, never inherited but by
    the guardian): held until both the launcher and its guardian have let go."""
    lock_path = lock_path or host_lock_path()
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise HostBusyError(
            f"another real node holds {lock_path}: one runs on this host, or a killed "
            "one's host is being restored by its guardian (node/guardian.log in its run "
            "directory); wait for it to end") from None
    return fd


class Guardian:
    """The launcher's end of a started guardian."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process

    @property
    def pid(self) -> int:
        return self._process.pid

    def release(self, timeout: float = 10.0) -> None:
        """The host is restored: the guardian ends without touching anything."""
        pipe = self._process.stdin
        if pipe is not None and not pipe.closed:
            try:
                pipe.write(RELEASED)
                pipe.close()
            except BrokenPipeError:
                pass  # it ended already
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def start(before: hoststate.HostState, scope: str, log_path: Path,
          host_lock: int) -> Guardian:
    """A guardian of the host as recorded in ``before`` for the node of ``scope``,
    sharing ``host_lock`` (:func:`hold_host`); once it says it guards (a guardian
    that failed to start would leave the host unguarded unseen)."""
    state = pickle.dumps((before, scope))
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            # Not "-m": the package imports this module first, which runpy warns of.
            [sys.executable, "-c", f"import sys, {__name__} as g; sys.exit(g.main())"],
            stdin=subprocess.PIPE, stdout=log,
            stderr=subprocess.STDOUT, cwd="/", start_new_session=True,
            pass_fds=(host_lock,))
    assert process.stdin is not None
    guardian = Guardian(process)
    try:
        process.stdin.write(_LENGTH.pack(len(state)) + state)
        process.stdin.flush()
        deadline = time.monotonic() + ACKNOWLEDGE_SECONDS
        while GUARDING not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the real node's guardian did not start: "
                                   + log_path.read_text(errors="replace")[-2000:])
            time.sleep(0.05)
    except BaseException:
        guardian.release()  # nothing to guard: it must not restore anything
        raise
    return guardian


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    data = stream.read(size)
    return data if len(data) == size else None


def guard(stream: IO[bytes], log: IO[str]) -> list[str] | None:
    """Waits on ``stream``; restores the host unless released. Returns what still
    differs after a restore, None when released (or given no state)."""
    header = _read_exactly(stream, _LENGTH.size)
    if header is None:
        return None
    state = _read_exactly(stream, _LENGTH.unpack(header)[0])
    if state is None:
        return None
    before, scope = pickle.loads(state)  # noqa: S301 - written by its own launcher
    print(f"{GUARDING} of the node in {scope}", file=log, flush=True)
    if stream.read() == RELEASED:
        return None
    started = time.monotonic()
    print(f"the launcher of the node in {scope} ended without restoring the host: "
          "restoring it", file=log, flush=True)
    left = hoststate.restore(before, scope)  # which kills what the node left first
    for difference in left:
        print(f"host not restored: {difference}", file=log, flush=True)
    print(f"restored in {time.monotonic() - started:.1f} s", file=log, flush=True)
    return left


def main() -> int:
    # Of its own session already; a terminal's hangup or Ctrl-C aimed at the
    # launcher's group must not end the guardian before its work.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    left = guard(sys.stdin.buffer, sys.stdout)
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
