from __future__ import annotations

import sys
from pathlib import Path

from stackforge_operator.devcluster.processes import (
    ManagedProcess,
    pid_alive,
    processes_mentioning,
)


def test_stop_terminates_and_reaps(tmp_path: Path) -> None:
    marker = f"sleep-marker-{tmp_path.name}"
    process = ManagedProcess(
        name="sleeper",
        argv=[sys.executable, "-c", f"import time; time.sleep(60)  # {marker}"],
        log_path=tmp_path / "sleeper.log",
    )
    process.start()
    assert process.running()
    assert process.pid is not None
    assert processes_mentioning(marker) == [process.pid]
    process.stop(timeout=5)
    assert not process.running()
    assert not pid_alive(process.pid)
    assert processes_mentioning(marker) == []


def test_output_goes_to_the_log(tmp_path: Path) -> None:
    process = ManagedProcess(
        name="talker",
        argv=[sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"],
        log_path=tmp_path / "talker.log",
    )
    process.start()
    assert process.popen is not None
    process.popen.wait(timeout=10)
    assert process.log_tail().splitlines() == ["out", "err"]
