"""``python -m stackforge_operator.drill.await_server SECONDS COMMAND...``: wait until
the database libpq's ``PGHOST`` and ``PGPORT`` name accepts TCP connections, for at
most SECONDS, then become COMMAND (exec: same process, same environment).

A Physical drill's runner starts with the scratch pod, which spends most of the
drill restoring the backup; the restored server listens only once that is done
and then replays WAL for seconds more before it answers. The runner's own start
(Python importing boto3, pydantic and the models: about half a CPU-second) came
in the middle of the restore, on a node where the restore and the S3 server
already use the cores, and the runner's pod weighs more than the best-effort
scratch pod. Waited for with the standard library alone, the start comes while
the server replays, before it can answer.

Whatever happens here, COMMAND runs: it does its own waiting and reports what
it finds (a server that never listened is its RestoreFailed to report, not this
program's). Only the standard library: importing anything of the runner's
would be the cost this avoids.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence

# A refused connect costs next to nothing; the restore beside it has the CPU.
POLL_SECONDS = 0.2
USAGE = "usage: python -m stackforge_operator.drill.await_server SECONDS COMMAND [ARG...]"


def server_listens(env: Mapping[str, str], timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections where libpq's PGHOST and PGPORT
    point. True without asking for a socket directory or several hosts (psql
    itself is the judge of those)."""
    host, port = env.get("PGHOST", ""), env.get("PGPORT", "5432")
    if not host or host.startswith("/") or "," in host or not port.isdigit():
        return True
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def await_listening(env: Mapping[str, str], seconds: float,
                    poll_seconds: float = POLL_SECONDS) -> bool:
    """Until the server listens or ``seconds`` have passed; whether it listens."""
    deadline = time.monotonic() + seconds
    while not server_listens(env):
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_seconds)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        seconds = float(args[0])
    except (IndexError, ValueError):
        print(USAGE, file=sys.stderr)
        return 2
    command = args[1:]
    if not command:
        print(USAGE, file=sys.stderr)
        return 2
    await_listening(os.environ, seconds)
    os.execvp(command[0], command)  # noqa: S606
    return 127  # not reached: execvp returns only by raising (COMMAND not found)


if __name__ == "__main__":
    sys.exit(main())
