"""Signal dispositions of the programs the tests start."""

from __future__ import annotations

import signal


def default_stop_signals() -> None:
    """SIGINT and SIGTERM at their defaults, as a terminal's program and a
    container's first process start: a test run in the background (CI) inherits
    SIGINT ignored, and a child would inherit that too (a shell may then neither
    trap nor reset it; Python never raises KeyboardInterrupt). For ``preexec_fn``."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
