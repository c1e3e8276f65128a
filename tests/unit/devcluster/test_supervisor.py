from __future__ import annotations

import sys
import time
from pathlib import Path

from stackforge_operator.devcluster.processes import ManagedProcess
from stackforge_operator.devcluster.supervisor import Crash, CrashRestarter, crash_reason
from tests.support.tenants import eventually

# Crashes like a Go program (exit 2, "fatal error: ...") the first time and
# runs the second time: the marker file tells the runs apart.
CRASH_ONCE = """
import pathlib, sys, time
marker = pathlib.Path(sys.argv[1])
if not marker.exists():
    marker.write_text("crashed")
    print("starting", flush=True)
    print("fatal error: concurrent map writes", flush=True)
    print("goroutine 308 [running]:", flush=True)
    sys.exit(2)
time.sleep(60)
"""


def _process(tmp_path: Path, code: str, *args: str) -> ManagedProcess:
    return ManagedProcess(name="component", argv=[sys.executable, "-c", code, *args],
                          log_path=tmp_path / "component.log")


def test_a_crash_is_answered_with_a_restart_and_recorded(tmp_path: Path) -> None:
    process = _process(tmp_path, CRASH_ONCE, str(tmp_path / "marker"))
    logged: list[str] = []
    restarter = CrashRestarter(process, interval=0.02, log=logged.append)
    process.start()
    first = process.pid
    restarter.start()
    try:
        eventually(lambda: process.pid != first and process.running(), timeout=10, interval=0.02)
        assert restarter.crashes == [Crash(2, "fatal error: concurrent map writes")]
        assert not restarter.gave_up
        assert logged == [f"component crashed (exit 2: fatal error: concurrent map writes); "
                          f"restarted (pid {process.pid})"]
    finally:
        restarter.stop()
        process.stop(timeout=5)


def test_a_component_that_always_crashes_is_given_up_after_the_limit(tmp_path: Path) -> None:
    process = _process(tmp_path, "import sys; print('panic: no config'); sys.exit(1)")
    restarter = CrashRestarter(process, limit=2, interval=0.02)
    process.start()
    restarter.start()
    try:
        eventually(lambda: restarter.gave_up, timeout=10, interval=0.02)
        assert restarter.crashes == [Crash(1, "panic: no config")] * 2
        assert not process.running()
    finally:
        restarter.stop()


def test_a_kill_is_left_alone_and_a_process_started_again_is_watched(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    marker.write_text("the first run sleeps")
    process = _process(tmp_path, CRASH_ONCE, str(marker))
    restarter = CrashRestarter(process, interval=0.02)
    process.start()
    restarter.start()
    try:
        process.kill()
        time.sleep(0.3)  # many rounds of the watch
        assert not process.running()
        assert restarter.crashes == []
        # Whoever killed it starts it again; that one's crash is answered.
        marker.unlink()
        process.start()
        restarted_from = process.pid
        eventually(lambda: process.pid != restarted_from and process.running(),
                   timeout=10, interval=0.02)
        assert [crash.exit_status for crash in restarter.crashes] == [2]
    finally:
        restarter.stop()
        process.stop(timeout=5)


def test_nothing_is_restarted_once_the_watch_is_stopped(tmp_path: Path) -> None:
    process = _process(tmp_path, "import sys, time; time.sleep(0.3); sys.exit(3)")
    restarter = CrashRestarter(process, interval=0.02)
    process.start()
    restarter.start()
    restarter.stop()
    assert process.popen is not None
    assert process.popen.wait(timeout=5) == 3
    time.sleep(0.1)
    assert not process.running()
    assert restarter.crashes == []


def test_a_clean_exit_is_not_a_crash(tmp_path: Path) -> None:
    process = _process(tmp_path, "import signal, sys, time\n"
                                 "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
                                 "time.sleep(60)")
    restarter = CrashRestarter(process, interval=0.02)
    process.start()
    restarter.start()
    try:
        time.sleep(0.2)  # the handler is in place
        process.stop(timeout=5)
        assert process.popen is not None and process.popen.returncode == 0
        time.sleep(0.2)
        assert not process.running()
        assert restarter.crashes == []
    finally:
        restarter.stop()


def test_the_reason_is_the_go_runtimes_line_or_else_the_last_line() -> None:
    assert crash_reason("a\nfatal error: concurrent map writes\n\ngoroutine 1") == (
        "fatal error: concurrent map writes")
    assert crash_reason("a\npanic: runtime error\n") == "panic: runtime error"
    assert crash_reason("started\nexiting: bad flag\n\n") == "exiting: bad flag"
    assert crash_reason("") == "(no output)"
