"""What every Job-pod runner (backup run, drill run) does around its work."""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any


def prepare() -> None:
    """Log to stderr (stdout carries the result line) and turn SIGTERM into KeyboardInterrupt.

    Kubernetes stops a pod (activeDeadlineSeconds, eviction, sandbox TTL) with
    SIGTERM; as KeyboardInterrupt it lets the runner abort its upload or
    restore and still report.
    """
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
    )
    # botocore's own debug output would include request headers.
    logging.getLogger("botocore").setLevel(logging.WARNING)

    def handler(_signum: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def report(line: str, termination_log: Path | None) -> None:
    """The result line on stdout and, for the pod's termination message, in the log file."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    if termination_log:
        try:
            termination_log.write_text(line + "\n")
        except OSError as exc:
            logging.getLogger(__name__).warning("termination log: %s", exc)


def find_result_line(
    text: str, is_result: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    """The last line of ``text`` that is a JSON object ``is_result`` accepts, if any.

    A runner's pod runs with ``terminationMessagePolicy: FallbackToLogsOnError``:
    its termination message is the result file, or, when that is empty, the
    log's last lines, with the result line among them.
    """
    for line in reversed(text.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and is_result(data):
            return data
    return None
