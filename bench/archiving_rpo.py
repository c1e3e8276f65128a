#!/usr/bin/env python3
"""Benchmark: the RPO continuous archiving achieves with the defaults, against the dumps'.

A loopback PostgreSQL archives the way the pods do (builders/archiving.py:
pgBackRest's asynchronous archive-push into an encrypted, zstd-compressed
repository on the tests' TLS S3 server, ``archive_timeout`` 60 s, the image's
archiver sidecar committing its heartbeat twice per timeout), while a client
commits a row with its time every quarter second. At random moments D (the
"disaster") the archive is listed; the database is then restored from the
repository with WAL fetching limited to the segments that were archived at D
(what survives a primary lost at D), and the achieved RPO is D less the newest
restored row's commit time.

The baseline, in the same run: the logical dumps' RPO at the same moments, with
one dump taken at the start of the run (in production the nightly dump makes
that anything up to a day plus the dump's duration).

At each D it also prints where the recoverability window would end, both ways
the operator can say it (reconcile/physical_backups.py): the primary's figure
(the exporter's ``stackforge_archive`` query: the newest heartbeat in a segment
PostgreSQL reports archived) and the bucket's bound (the newest segment's
upload time less the timeout), each as seconds before D, and whether the
restore reached it (a window that ends later than the restore reaches lies).

    .venv/bin/python bench/archiving_rpo.py [--rounds 6]

Needs: postgresql and pgbackrest (apt), moto[server] (pip). Run from the repo
root, as root (the servers run as the postgres user).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine_facts  # noqa: E402
from bench.physical_backup import Archiver  # noqa: E402
from tests.support import postgres_server as pg  # noqa: E402
from tests.support.pgbackrest_repo import (  # noqa: E402
    REPOSITORY_PATH,
    STANZA,
    Archiving,
    archiving_server,
    pgbackrest,
)

from stackforge_operator.builders.exporters import (  # noqa: E402
    ARCHIVE_METRIC,
    POSTGRES_EXPORTER_QUERIES,
)

ARCHIVE_TIMEOUT_SECONDS = 60  # the default of continuousArchiving.archiveTimeoutSeconds
WRITE_INTERVAL_SECONDS = 0.25
GOAL_SECONDS = 60


@dataclass
class Round:
    disaster: datetime
    segments: int
    newest_restored: datetime
    dump_taken: datetime
    # Where the window would end: the primary's figure (None: it knew none), and
    # the bucket's newest upload less the timeout.
    primary_end: datetime | None
    bucket_end: datetime

    def before_disaster(self, end: datetime | None) -> str:
        return "-" if end is None else f"{(self.disaster - end).total_seconds():.1f} s"

    def reached(self, end: datetime | None) -> bool:
        return end is None or end <= self.newest_restored

    @property
    def rpo(self) -> float:
        return (self.disaster - self.newest_restored).total_seconds()

    @property
    def dump_rpo(self) -> float:
        return (self.disaster - self.dump_taken).total_seconds()


class Writer:
    """Commits a row with its commit-time clock every WRITE_INTERVAL_SECONDS."""

    def __init__(self, server: pg.PostgresServer) -> None:
        server.psql("CREATE TABLE ticks (at timestamptz NOT NULL)")
        self.process = subprocess.Popen(  # type: ignore[call-overload]
            [server.bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
             "-h", str(server.socket_dir), "-p", str(server.port), "-U", server.superuser,
             "-d", "postgres"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            **server.os_user.popen_kwargs())
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        assert self.process.stdin is not None
        while not self.stopping.wait(WRITE_INTERVAL_SECONDS):
            self.process.stdin.write("INSERT INTO ticks VALUES (clock_timestamp());\n")
            self.process.stdin.flush()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(30)


def archived_segments(archiving: Archiving) -> tuple[list[str], datetime]:
    """Names of the WAL segments in the archive now, and the newest one's upload time."""
    prefix = f"{REPOSITORY_PATH.lstrip('/')}/archive/{STANZA}/"
    found: dict[str, datetime] = {}
    for page in archiving.s3.client().get_paginator("list_objects_v2").paginate(
            Bucket=archiving.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            name = obj["Key"].rsplit("/", 1)[-1]
            if len(name) > 24 and name[24] == "-":
                found[name[:24]] = obj["LastModified"]
    names = sorted(found)
    return names, found[names[-1]]


def primary_archived_through(server: pg.PostgresServer) -> datetime | None:
    """The exporter's figure, by the exporter's own query."""
    query = yaml.safe_load(POSTGRES_EXPORTER_QUERIES)[ARCHIVE_METRIC]["query"]
    seconds = float(server.psql(query + ";").strip())
    return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else None


def restored_newest(archiving: Archiving, segments: list[str]) -> datetime:
    """Restore the newest backup and replay ``segments`` only; the newest row then."""
    server = archiving.server
    work = Path(tempfile.mkdtemp(prefix="sf-bench-rpo-"))
    allowed = work / "allowed"
    allowed.write_text("".join(f"{s}\n" for s in segments))
    fetch = work / "fetch"
    restored = pg.PostgresServer(settings={"archive_mode": "off"})
    # A segment the archive did not have at D is not there (a lost primary's).
    fetch.write_text(
        "#!/bin/sh\n"
        f'grep -qx "$1" {allowed} || exit 1\n'
        f'exec pgbackrest --config={archiving.config} --stanza={STANZA} '
        f'--pg1-path={restored.data_dir} --no-archive-async archive-get "$1" "$2"\n')
    fetch.chmod(0o755)
    try:
        for path in (work, allowed, fetch, restored.root):
            os.chown(path, server.os_user.uid, server.os_user.gid)
        ran = subprocess.run(  # type: ignore[call-overload]
            ["pgbackrest", f"--config={archiving.config}", f"--stanza={STANZA}",
             f"--pg1-path={restored.data_dir}", "--type=default",
             f"--recovery-option=restore_command={fetch} %f %p", "restore"],
            capture_output=True, text=True, timeout=600, check=False,
            **server.os_user.popen_kwargs())
        if ran.returncode != 0:
            raise SystemExit(f"pgbackrest restore failed:\n{ran.stdout}{ran.stderr}")
        restored.start(initdb=False, timeout=600)
        deadline = time.monotonic() + 600
        while restored.psql("SELECT pg_is_in_recovery()").strip() != "f":
            if time.monotonic() > deadline:
                raise SystemExit(f"the restore never ended:\n{restored.log_tail()}")
            time.sleep(0.2)
        newest = restored.psql("SELECT extract(epoch FROM max(at)) FROM ticks").strip()
        return datetime.fromtimestamp(float(newest), UTC)
    finally:
        restored.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seed", type=int, default=None, help="of the disasters' moments")
    args = parser.parse_args()
    chance = random.Random(args.seed)  # noqa: S311 - moments of a benchmark, no secret

    print(machine_facts())
    settings = {"archive_timeout": f"{ARCHIVE_TIMEOUT_SECONDS}s"}
    with archiving_server(io_timeout=60, settings=settings) as archiving:
        for command in (["stanza-create"], ["backup", "--type=full", "--start-fast"]):
            ran = pgbackrest(archiving, *command, timeout=600)
            if ran.returncode != 0:
                raise SystemExit(f"pgbackrest {command[0]} failed:\n{ran.stdout}{ran.stderr}")
        archiver = Archiver(archiving)
        writer = Writer(archiving.server)
        # The table and its first rows in the archive before any disaster:
        # `check` switches the segment and waits until it is archived.
        time.sleep(1)
        checked = pgbackrest(archiving, "check", timeout=600)
        if checked.returncode != 0:
            raise SystemExit(f"pgbackrest check failed:\n{checked.stdout}{checked.stderr}")
        dump_taken = datetime.now(UTC)
        dumped = subprocess.run(  # type: ignore[call-overload]
            [archiving.server.bin("pg_dump"), "-Fc", "-h", str(archiving.server.socket_dir),
             "-p", str(archiving.server.port), "-U", archiving.server.superuser,
             "--no-sync", "-f", os.devnull, "postgres"],
            capture_output=True, text=True, check=False,
            **archiving.server.os_user.popen_kwargs())
        if dumped.returncode != 0:
            raise SystemExit(f"pg_dump failed:\n{dumped.stderr}")
        rounds: list[Round] = []
        try:
            for number in range(1, args.rounds + 1):
                # Any moment of the archive's cycle, never in step with it.
                time.sleep(chance.uniform(20, 20 + ARCHIVE_TIMEOUT_SECONDS))
                disaster = datetime.now(UTC)
                segments, uploaded = archived_segments(archiving)
                primary_end = primary_archived_through(archiving.server)
                newest = restored_newest(archiving, segments)
                rounds.append(Round(
                    disaster, len(segments), newest, dump_taken, primary_end,
                    uploaded - timedelta(seconds=ARCHIVE_TIMEOUT_SECONDS)))
                print(f"round {number}: RPO {rounds[-1].rpo:.1f} s", flush=True)
        finally:
            writer.stop()
            archiver.stop()

    print(f"\n{args.rounds} disasters at random moments; archive_timeout "
          f"{ARCHIVE_TIMEOUT_SECONDS} s, a commit every {WRITE_INTERVAL_SECONDS} s\n")
    print(f"| {'round':>5} | {'disaster (UTC)':<15} | {'segments':>8} | "
          f"{'RPO, archive':>12} | {'RPO, dumps':>10} | {'window end, primary':>19} | "
          f"{'window end, bucket':>18} |")
    print(f"|{'-' * 7}|{'-' * 17}|{'-' * 10}|{'-' * 14}|{'-' * 12}|{'-' * 21}|{'-' * 20}|")
    for number, r in enumerate(rounds, 1):
        moment = r.disaster.strftime("%H:%M:%S.%f")[:12]
        print(f"| {number:>5} | {moment:<15} | {r.segments:>8} | "
              f"{r.rpo:>10.1f} s | {r.dump_rpo:>8.0f} s | "
              f"{r.before_disaster(r.primary_end):>19} | {r.before_disaster(r.bucket_end):>18} |")
    rpos = [r.rpo for r in rounds]
    print(f"\narchive RPO: median {statistics.median(rpos):.1f} s, worst {max(rpos):.1f} s "
          f"(goal: <= {GOAL_SECONDS} s); dumps: worst {max(r.dump_rpo for r in rounds):.0f} s "
          "in this run, up to a day with nightly dumps")
    for way, ends in (("primary's figure", [r.primary_end for r in rounds]),
                      ("bucket's bound", [r.bucket_end for r in rounds])):
        behind = [(r.disaster - e).total_seconds() for r, e in zip(rounds, ends, strict=True)
                  if e is not None]
        lies = sum(not r.reached(e) for r, e in zip(rounds, ends, strict=True))
        median = f"median {statistics.median(behind):.1f} s before D" if behind else "never known"
        print(f"window end by the {way}: {median}; past what the restore reached: {lies} "
              f"of {len(rounds)}")


if __name__ == "__main__":
    main()
