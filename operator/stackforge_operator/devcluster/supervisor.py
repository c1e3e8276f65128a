"""Start a component again when it crashes on its own.

kwok v0.8.0 can die at start-up with Go's ``fatal error: concurrent map
writes``: its stages build their CEL environments lazily, from several
workers at once, and the CEL library it uses caches types in global maps
without a lock. kwok keeps no state of its own (everything is in the API
server), so starting it again is a complete recovery; a failed test run is
not. A component killed by a signal (the chaos tests' faults) or stopped
cleanly is left alone: only a positive exit status counts as a crash.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass

from stackforge_operator.devcluster.processes import ManagedProcess


@dataclass(frozen=True)
class Crash:
    """One crash that was answered with a restart."""

    exit_status: int
    # The line that says why (Go prints "fatal error: ..." or "panic: ..."),
    # else the last line of the log.
    reason: str


def crash_reason(log_tail: str) -> str:
    lines = [line for line in log_tail.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("fatal error:", "panic:")):
            return line
    return lines[-1] if lines else "(no output)"


class CrashRestarter:
    """Watches one process from a thread; restarts it after a crash, at most
    ``limit`` times, then gives up so that a component that always fails is
    reported instead of looping."""

    def __init__(
        self,
        process: ManagedProcess,
        *,
        limit: int = 3,
        interval: float = 0.2,
        log: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        self.process = process
        self.limit = limit
        self.crashes: list[Crash] = []
        self.gave_up = False
        self._interval = interval
        self._log = log
        self._stopping = threading.Event()
        # The process that exited without crashing, not to be judged again.
        self._left_alone: subprocess.Popen[bytes] | None = None
        # Held while the thread looks at or restarts the process, so that
        # stop() never races a restart.
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._watch, name=f"restart-{process.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; the process itself is the caller's to stop."""
        with self._lock:
            self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        while not self._stopping.wait(self._interval):
            with self._lock:
                if self._stopping.is_set() or not self._check_once():
                    return

    def _check_once(self) -> bool:
        """False once there is nothing more to watch (it gave up)."""
        popen = self.process.popen
        status = popen.poll() if popen is not None else None
        if status is None or popen is self._left_alone:
            return True
        if status <= 0:
            # Killed by a signal (a fault someone meant, who may start it
            # again: then the new process is watched) or a clean exit after
            # SIGTERM: not a crash.
            self._left_alone = popen
            return True
        reason = crash_reason(self.process.log_tail(200))
        if len(self.crashes) >= self.limit:
            self.gave_up = True
            self._log(f"{self.process.name} crashed (exit {status}: {reason}); "
                      f"not restarted after {self.limit} restarts")
            return False
        self.crashes.append(Crash(exit_status=status, reason=reason))
        self.process.start()
        self._log(f"{self.process.name} crashed (exit {status}: {reason}); "
                  f"restarted (pid {self.process.pid})")
        return True
