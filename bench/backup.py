#!/usr/bin/env python3
"""Benchmark: the backup runner (gzip and zstd dumps) vs ``pg_dump -Fc | aws s3 cp -
s3://...``, same servers, same run.

Starts a throwaway PostgreSQL (Debian's packages) and moto's S3 server,
generates a database of at least ``--size-mib`` (default 1100 MiB), then
alternates the three contenders ``--rounds`` times each, plus one
``pg_dump -Fc > /dev/null`` and one ``pg_dump -Fc -Z0 > /dev/null`` to show what
the producer alone manages (the second is the physical limit of a dump).
Prints a table: dump size, seconds, the database's MB per second, each runner
against the pipeline and against ``-Z0`` to /dev/null, and the runner's peak RSS
(from wait4, so it includes the pg_dump and psql it reaped).

    .venv/bin/python bench/backup.py [--size-mib 1100] [--rounds 2] [--s3 moto|lean]

``--s3 lean`` serves S3 from bench/leans3 (gofakes3, in memory; bench/lean_s3.py
says why) instead of moto, which takes as much CPU as PostgreSQL on these two
cores; every contender uses the same server in a run.

Needs: postgresql (apt), moto[server] and awscli (pip); Go for ``--s3 lean``.
Run from the repo root.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.lean_s3 import LeanS3Server  # noqa: E402
from bench.machine import machine_facts  # noqa: E402
from tests.support import postgres_server as pg  # noqa: E402
from tests.support import s3_server as s3  # noqa: E402
from tests.support.fixtures_backup import run_runner_measured, runner_argv  # noqa: E402

from stackforge_operator.backup.manifest import Manifest  # noqa: E402

MB = 1_000_000
MiB = 1024 * 1024
# Either server: every contender of a run uses the same one.
S3 = s3.S3Server | LeanS3Server


@dataclass
class Sample:
    who: str
    seconds: float
    size_bytes: int
    peak_rss_bytes: int | None = None
    client_cpu: float = 0.0  # the contender and its children (pg_dump, psql or aws)
    postgres_cpu: float = 0.0  # PostgreSQL's backends
    s3_cpu: float = 0.0  # the S3 server: on this machine's cores, unlike a real bucket

    @property
    def mb_per_s(self) -> float:
        return self.size_bytes / MB / self.seconds


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _process_cpu(pid: int | None) -> float:
    """CPU seconds of a process and the children it reaped (a postmaster's backends)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime, stime, cutime, cstime: fields 14-17 of stat(5), 12-15 after the name.
    ticks = sum(int(f) for f in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def measured(
    server: pg.PostgresServer, s3srv: S3, contender: Callable[[], Sample]
) -> Sample:
    """Run one contender, adding what it cost in CPU on both sides.

    CPU seconds do not depend on what else the machine is doing, unlike wall
    time on a shared 2-core box, so they compare the two fairly even when the
    throughput figures are noisy.
    """
    client0 = _children_cpu()
    postgres0, s3_0 = _process_cpu(server.pid), _process_cpu(s3srv.pid)
    sample = contender()
    # Backends are reaped (and their CPU added to the postmaster's) a moment
    # after the client disconnects: let that happen, outside the timed part.
    time.sleep(1.0)
    sample.client_cpu = _children_cpu() - client0
    sample.postgres_cpu = _process_cpu(server.pid) - postgres0
    sample.s3_cpu = _process_cpu(s3srv.pid) - s3_0
    return sample


def _aws_cli() -> str:
    beside = Path(sys.executable).parent / "aws"
    found = str(beside) if beside.exists() else shutil.which("aws")
    if not found:
        raise SystemExit("awscli not found: pip install awscli")
    return found


def pipeline(
    server: pg.PostgresServer, s3srv: S3, database: str, bucket: str, key: str
) -> Sample:
    env = pg.env_for(server, database, s3srv.env())
    script = (
        'set -o pipefail; "$PG_DUMP" -Fc --no-password | '
        '"$AWS" s3 cp - "s3://$BUCKET/$KEY" --endpoint-url "$ENDPOINT" --only-show-errors'
    )
    env.update(PG_DUMP=server.bin("pg_dump"), AWS=_aws_cli(), BUCKET=bucket, KEY=key,
               ENDPOINT=s3srv.endpoint)
    started = time.monotonic()
    subprocess.run(["bash", "-c", script], env=env, check=True)
    seconds = time.monotonic() - started
    size = s3srv.client().head_object(Bucket=bucket, Key=key)["ContentLength"]
    return Sample("pg_dump | aws s3 cp", seconds, size)


def runner(
    server: pg.PostgresServer, s3srv: S3, database: str, bucket: str,
    compression: str,
) -> Sample:
    argv = runner_argv(tenant="bench", bucket=bucket, endpoint=s3srv.endpoint,
                       extra=["--pg-bin-dir", str(server.bin_dir),
                              "--dump-compression", compression])
    run = run_runner_measured(argv, pg.env_for(server, database, s3srv.env()))
    if run.returncode != 0:
        raise SystemExit(f"runner failed:\n{run.stdout}\n{run.stderr}")
    body = s3srv.client().get_object(Bucket=bucket, Key=run.result["manifestKey"])["Body"]
    dump = Manifest.from_json(body.read()).artifact("postgres")
    assert dump is not None
    return Sample(f"stackforge runner ({compression})", run.seconds, dump.size_bytes,
                  run.peak_rss_bytes)


def dump_to_null(server: pg.PostgresServer, database: str, *level: str) -> Sample:
    env = pg.env_for(server, database)
    started = time.monotonic()
    with Path(os.devnull).open("wb") as null:
        proc = subprocess.Popen([server.bin("pg_dump"), "-Fc", *level, "--no-password"],
                                stdout=subprocess.PIPE, env=env)
        assert proc.stdout is not None
        size = 0
        while chunk := proc.stdout.read(MiB):
            size += len(chunk)
            null.write(chunk)
        proc.wait()
    return Sample(" ".join(["pg_dump -Fc", *level, "> /dev/null"]), time.monotonic() - started,
                  size)


def _empty_bucket(s3srv: S3, bucket: str) -> None:
    # Both servers keep objects in memory: drop each run's dump before the next.
    client = s3srv.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-mib", type=int, default=1100, help="database size to generate")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each contender")
    parser.add_argument("--s3", choices=("moto", "lean"), default="moto",
                        help="the S3 server: moto (the tests') or leans3 (little CPU)")
    args = parser.parse_args()

    t0 = time.monotonic()
    server = pg.PostgresServer()
    s3srv: S3 = s3.S3Server() if args.s3 == "moto" else LeanS3Server()
    server.start()
    try:
        s3srv.start()
        database = server.create_database("bench")
        print(f"generating ~{args.size_mib} MiB ...", flush=True)
        started = time.monotonic()
        pg.seed_bulk(server, database, args.size_mib)
        db_size = pg.database_size(server, database)
        print(f"database: {db_size / MiB:.0f} MiB in {time.monotonic() - started:.0f}s",
              flush=True)
        bucket = s3srv.create_bucket("bench")

        samples: list[Sample] = []
        for level in ((), ("-Z0",)):
            samples.append(measured(server, s3srv,
                                    functools.partial(dump_to_null, server, database, *level)))
            print(f"  {samples[-1].who}: {samples[-1].seconds:.1f}s", flush=True)
        load_before = os.getloadavg()[0]
        contenders: dict[str, Callable[[], Sample]] = {
            "pipeline": functools.partial(pipeline, server, s3srv, database, bucket,
                                          "pipe/latest.dump"),
            "gzip": functools.partial(runner, server, s3srv, database, bucket, "gzip"),
            "zstd": functools.partial(runner, server, s3srv, database, bucket, "zstd"),
        }
        for round_ in range(args.rounds):
            # Rotate who goes first so that none always gets a warm cache.
            names = list(contenders)
            order = names[round_ % 3:] + names[:round_ % 3]
            for who in order:
                sample = measured(server, s3srv, contenders[who])
                samples.append(sample)
                print(f"  {sample.who}: {sample.seconds:.1f}s "
                      f"({sample.size_bytes / MiB:.0f} MiB stored)", flush=True)
                _empty_bucket(s3srv, bucket)
    finally:
        s3srv.stop()
        server.stop()

    def seconds(who: str) -> float:
        return statistics.median(s.seconds for s in samples if s.who == who)

    pipe = seconds("pg_dump | aws s3 cp")
    limit = seconds("pg_dump -Fc -Z0 > /dev/null")
    print()
    print(f"machine: {machine_facts()}")
    print(f"database: {db_size / MiB:.0f} MiB (pg_database_size); "
          f"{args.rounds} rounds; S3 server {args.s3}; total {time.monotonic() - t0:.0f}s; "
          f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print()
    print("| contender | stored MiB | seconds | database MB/s | CPU s client | "
          "CPU s PostgreSQL | CPU s S3 server |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for s in samples:
        label = s.who.replace("|", "\\|")
        print(f"| {label} | {s.size_bytes / MiB:.0f} | {s.seconds:.1f} "
              f"| {db_size / MB / s.seconds:.1f} | {s.client_cpu:.1f} | {s.postgres_cpu:.1f} "
              f"| {s.s3_cpu:.1f} |")
    print()
    # Speed in the database's bytes per second: the stored sizes differ by codec.
    print("| runner | median seconds | speed / the pipeline's (goal >= 3 for zstd) | "
          "time / pg_dump -Z0 to /dev/null's (goal <= 1.6 for zstd) | "
          "peak RSS (goal <= 128 MiB) |")
    print("|---|---:|---:|---:|---:|")
    for codec in ("gzip", "zstd"):
        who = f"stackforge runner ({codec})"
        peak = max(s.peak_rss_bytes or 0 for s in samples if s.who == who)
        print(f"| {codec} | {seconds(who):.1f} | {pipe / seconds(who):.2f} | "
              f"{seconds(who) / limit:.2f} | {peak / MiB:.0f} MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
