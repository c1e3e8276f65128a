"""localrun.interrupt_on_signals: a TERM or an INT runs the teardown, also in the background."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# A stand-in for a run: it says when it is started, waits, and its teardown
# (the finally a run's host restore sits in) writes a file.
_RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from stackforge_operator.devcluster.localrun import interrupt_on_signals
    interrupt_on_signals()
    try:
        print("started", flush=True)
        time.sleep(60)
    finally:
        Path(sys.argv[1]).write_text("torn down")
""")


def _ignore_sigint() -> None:
    # What a non-interactive shell does to a command it starts with '&'.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_background_run_tears_down_on_term_and_int(tmp_path: Path, signum: int) -> None:
    marker = tmp_path / "teardown"
    run = subprocess.Popen([sys.executable, "-c", _RUN, str(marker)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, preexec_fn=_ignore_sigint)
    try:
        assert run.stdout is not None
        assert run.stdout.readline().strip() == "started"
        run.send_signal(signum)
        _, err = run.communicate(timeout=10)
    finally:
        run.kill()
    assert marker.read_text() == "torn down"
    # Ended by the KeyboardInterrupt the handler raised (which the interpreter
    # reports as a death by SIGINT), not by a TERM it never caught.
    assert run.returncode == -signal.SIGINT
    assert "KeyboardInterrupt" in err
