#!/usr/bin/env python3
"""Benchmark: a physical backup asked of the archiver vs the same ``pgbackrest backup`` run by hand.

The operator's way (builders/archiving.py, images/postgres/stackforge-archiver.sh):
a request in the file the pod's annotation becomes, picked up by the
archiver's poll (every 2 s, as in the pods), run through the image's
stackforge-pgbackrest wrapper in the background while the heartbeat goes on.
The baseline: pgBackRest's backup command with the same options, started
directly. Both back up the same loopback PostgreSQL into the same encrypted,
zstd-compressed, bundled repository on the tests' TLS S3 server, alternating,
``--rounds`` times each; the repository keeps one full backup, so each one
expires the one before, as a production retention would.

Prints a table: seconds and MB/s of the database's size, per contender, and
the ratio archiver/raw of their median throughputs (the issue's goal: at least
0.95). The archiver's time runs from the request's write to pgBackRest's end
(the poll's pick-up included; the kubelet's update of the annotation's file,
seconds in a pod, is not part of this loopback run).

    .venv/bin/python bench/physical_backup.py [--size-mib 1024] [--rounds 3]

Needs: postgresql and pgbackrest (apt), moto[server] (pip). Run from the repo
root, as root (the server and the archiver run as the postgres user).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine_facts  # noqa: E402
from tests.support import postgres_server as pg  # noqa: E402
from tests.support.pgbackrest_repo import (  # noqa: E402
    REPOSITORY_PATH,
    STANZA,
    Archiving,
    archiving_server,
    pgbackrest,
)

MB = 1_000_000
ARCHIVER = ROOT / "images/postgres/stackforge-archiver.sh"
WRAPPER = ROOT / "images/postgres/stackforge-pgbackrest.sh"
# What the archiver passes, for a request "<id> full count 1".
OPTIONS = ("--type=full", "--start-fast", "--repo1-retention-full-type=count",
           "--repo1-retention-full=1")


@dataclass
class Sample:
    who: str
    seconds: float
    size_bytes: int

    @property
    def mb_per_s(self) -> float:
        return self.size_bytes / MB / self.seconds


def raw(archiving: Archiving, size: int) -> Sample:
    started = time.monotonic()
    ran = pgbackrest(archiving, "backup", *OPTIONS, timeout=3600)
    seconds = time.monotonic() - started
    if ran.returncode != 0:
        raise SystemExit(f"pgbackrest backup failed:\n{ran.stdout}{ran.stderr}")
    return Sample("pgbackrest backup", seconds, size)


class Archiver:
    """The image's archiver sidecar, run on the host as the server's user."""

    def __init__(self, archiving: Archiving) -> None:
        server = archiving.server
        self.root = Path(tempfile.mkdtemp(prefix="sf-bench-archiver-"))
        bin_dir, state = self.root / "bin", self.root / "state"
        self.state = state
        bin_dir.mkdir()
        state.mkdir()
        (bin_dir / "stackforge-pgbackrest").symlink_to(WRAPPER)
        incarnation = self.root / "incarnation"
        incarnation.write_text(REPOSITORY_PATH.rsplit("/", 1)[1] + "\n")
        self.request = self.root / "request"
        self.request.write_text("")
        self.log = self.root / "archiver.log"
        for path in (self.root, state, incarnation, self.request):
            os.chown(path, server.os_user.uid, server.os_user.gid)
        env = {
            "PATH": f"{bin_dir}:{server.bin_dir}:/usr/bin:/bin",
            "PGBACKREST_CONFIG": str(archiving.config),
            "PGBACKREST_STANZA": STANZA,
            "STACKFORGE_REPOSITORY_BASE": REPOSITORY_PATH.rsplit("/", 1)[0],
            "STACKFORGE_INCARNATION_FILE": str(incarnation),
            "PGHOST": str(server.socket_dir),
            "PGPORT": str(server.port),
            "HEARTBEAT_SECONDS": "30",
            "REQUEST_FILE": str(self.request),
            "STATE_DIR": str(state),
        }
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(  # type: ignore[call-overload]
                [str(ARCHIVER)], env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, **server.os_user.popen_kwargs())
        # Its stanza-create first holds the repository's lock.
        self._wait_for(f"stanza {STANZA} is ready")

    def _wait_for(self, line: str, failure: str | None = None) -> None:
        while True:
            printed = self.log.read_text(errors="replace")
            if line in printed:
                return
            if (failure and failure in printed) or self.process.poll() is not None:
                raise SystemExit(f"the archiver failed:\n{printed[-4000:]}")
            time.sleep(0.05)

    def backup(self, size: int) -> Sample:
        request = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        started = time.time()
        self.request.write_text(f"{request} full count 1")
        self._wait_for(f"backup request {request} is complete",
                       f"backup request {request} failed")
        # The backup is complete when pgBackRest ends, which is when the
        # archiver's subshell writes its result (its log says so at the next
        # poll; the operator reads completion from the repository instead).
        seconds = (self.state / "stackforge-backup-result").stat().st_mtime - started
        # Ids are whole seconds: the next request must be a newer one.
        time.sleep(max(0.0, 1.05 - (time.time() - started)))
        return Sample("archiver (requested)", seconds, size)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        shutil.rmtree(self.root, ignore_errors=True)


def seed(server: pg.PostgresServer, mebibytes: int) -> int:
    """A logged table of about ``mebibytes`` (pgBackRest skips unlogged ones); its size."""
    database = server.create_database("bench")
    pg.seed_bulk(server, database, mebibytes)
    server.psql("ALTER TABLE public.bulk SET LOGGED; CHECKPOINT;", database, timeout=3600)
    return int(server.psql("SELECT pg_database_size('bench')").strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    print(machine_facts())
    with archiving_server(io_timeout=60) as archiving:
        created = pgbackrest(archiving, "stanza-create")
        if created.returncode != 0:
            raise SystemExit(f"stanza-create failed:\n{created.stdout}{created.stderr}")
        size = seed(archiving.server, args.size_mib)
        # The seed's WAL reaches the archive before anything is timed.
        checked = pgbackrest(archiving, "check", timeout=3600)
        if checked.returncode != 0:
            raise SystemExit(f"check failed:\n{checked.stdout}{checked.stderr}")
        archiver = Archiver(archiving)
        samples: list[Sample] = []
        try:
            for _ in range(args.rounds):
                samples.append(raw(archiving, size))
                samples.append(archiver.backup(size))
        finally:
            archiver.stop()

    print(f"\ndatabase: {size / MB:.0f} MB; {args.rounds} rounds each, alternating\n")
    print(f"| {'contender':<22} | {'seconds (each)':<34} | {'median MB/s':>11} |")
    print(f"|{'-' * 24}|{'-' * 36}|{'-' * 13}|")
    medians = {}
    for who in ("pgbackrest backup", "archiver (requested)"):
        mine = [s for s in samples if s.who == who]
        medians[who] = statistics.median(s.mb_per_s for s in mine)
        each = ", ".join(f"{s.seconds:.1f}" for s in mine)
        print(f"| {who:<22} | {each:<34} | {medians[who]:>11.1f} |")
    ratio = medians["archiver (requested)"] / medians["pgbackrest backup"]
    print(f"\narchiver / raw throughput: {ratio:.3f} (goal: >= 0.95)")


if __name__ == "__main__":
    main()
