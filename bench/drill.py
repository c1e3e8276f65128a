#!/usr/bin/env python3
"""Benchmark: the drill runner's RTO vs ``aws s3 cp s3://.../dump - | pg_restore``, same run.

Starts a throwaway PostgreSQL (Debian's packages) and moto's S3 server,
generates a database big enough for a dump of at least ``--min-dump-mib``
(default 1024), backs it up with the backup runner, then restores that one
backup ``--rounds`` times each way into a fresh empty database:

- the drill runner (``stackforge-operator drill run``) as a child process,
  timed by its own RTO: from ``--started-at`` (set just before the process
  starts) to the end of verification (checksum, connectivity, exact row
  count of every table), taken from its report in S3;
- ``aws s3 cp s3://<dump> - | pg_restore --dbname=...``, wall time, with no
  verification at all.  awscli is given ``multipart_threshold`` above the
  dump's size, so that it streams one GET like the drill runner does: its
  default (parallel 8 MiB ranged GETs) hits a slow path of moto's server
  that costs over a minute per GiB and would measure moto, not the restore.
  The default is still run once (``--no-default-awscli`` skips it) and
  shown, but the ratio is taken against the faster, single-GET pipeline.

Each restore starts after a CHECKPOINT with the previous scratch database
dropped, and the order alternates per round, so neither side inherits the
other's dirty buffers.  Prints a table with both times and the ratio
(target: drill <= 1.15 x pipeline).

    .venv/bin/python bench/drill.py [--min-dump-mib 1024] [--rounds 2]

Needs: postgresql (apt), moto[server] and awscli (pip).  Run from the repo root.
"""

from __future__ import annotations

import argparse
import json
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine_facts  # noqa: E402
from tests.support import postgres_server as pg  # noqa: E402
from tests.support import s3_server as s3  # noqa: E402
from tests.support.drill import drill_argv  # noqa: E402
from tests.support.fixtures_backup import (  # noqa: E402
    run_runner_measured,
    runner_argv,
    vm_hwm,
)

from stackforge_operator.backup.manifest import Manifest  # noqa: E402

MiB = 1024 * 1024
TENANT = "bench"
# seed_bulk's rows dump (pg_dump -Fc, default compression) to ~0.43 of their
# on-disk size: generate this much database per MiB of dump wanted.
DB_PER_DUMP = 2.45


@dataclass
class Sample:
    who: str
    seconds: float
    cpu_seconds: float  # client side: the contender and the children it reaped
    restore_seconds: float | None = None  # the S3 -> pg_restore stream alone
    peak_rss_bytes: int | None = None  # the runner's own (VmHWM), without pg_restore/psql


def _aws_cli() -> str:
    beside = Path(sys.executable).parent / "aws"
    found = str(beside) if beside.exists() else shutil.which("aws")
    if not found:
        raise SystemExit("awscli not found: pip install awscli")
    return found


def make_backup(server: pg.PostgresServer, s3srv: s3.S3Server, database: str,
                bucket: str, compression: str = "gzip") -> Manifest:
    argv = runner_argv(tenant=TENANT, bucket=bucket, endpoint=s3srv.endpoint,
                       extra=["--pg-bin-dir", str(server.bin_dir),
                              "--dump-compression", compression])
    run = run_runner_measured(argv, pg.env_for(server, database, s3srv.env()))
    if run.returncode != 0:
        raise SystemExit(f"backup failed:\n{run.stdout}\n{run.stderr}")
    body = s3srv.client().get_object(Bucket=bucket, Key=run.result["manifestKey"])["Body"]
    return Manifest.from_json(body.read())


def fresh_scratch(server: pg.PostgresServer, name: str) -> str:
    server.drop_database(name)
    server.psql("CHECKPOINT")
    return server.create_database(name)


def run_with_peak(argv: list[str], env: dict[str, str]) -> tuple[str, str, int, float]:
    """Run to completion; returns stdout, stderr, the process's own peak RSS, and CPU seconds.

    The peak is VmHWM sampled from /proc while it runs: ru_maxrss (what wait4
    reports) would be no smaller than this script's own size, because Linux
    carries the parent's high-water mark across fork and exec.  CPU seconds
    (user + system, from wait4) cover the process and the children it reaped.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        peak = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, vm_hwm(proc.pid))
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0 and proc.returncode != 1:
            raise SystemExit(f"{argv[0]} exited {proc.returncode}")
        out.seek(0)
        err.seek(0)
        return out.read(), err.read(), peak, usage.ru_utime + usage.ru_stime


def drill(server: pg.PostgresServer, s3srv: s3.S3Server, bucket: str, scratch: str,
          backup: Manifest) -> Sample:
    started = datetime.now(UTC)
    argv = drill_argv(tenant=TENANT, bucket=bucket, endpoint=s3srv.endpoint,
                      extra=["--pg-bin-dir", str(server.bin_dir), "--backup", backup.run_id,
                             "--started-at", started.isoformat()])
    stdout, stderr, peak, cpu = run_with_peak(argv, pg.env_for(server, scratch, s3srv.env()))
    result = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else {}
    if result.get("verdict") != "Passed":
        raise SystemExit(f"drill failed:\n{stdout}\n{stderr}")
    key = result["reportLocation"].removeprefix(f"s3://{bucket}/")
    report: dict[str, Any] = json.loads(
        s3srv.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    )
    dump = backup.artifact("postgres")
    codec = "zstd" if dump is not None and dump.key.endswith(".zst") else "gzip"
    return Sample(f"drill runner, {codec} dump (RTO: start-up, restore, verification)",
                  float(report["rto"]["seconds"]), cpu, float(report["restore"]["seconds"]),
                  peak)


def pipeline(server: pg.PostgresServer, s3srv: s3.S3Server, bucket: str, key: str,
             scratch: str, *, aws_config: Path | None) -> Sample:
    env = pg.env_for(server, scratch, s3srv.env())
    if aws_config is not None:
        env["AWS_CONFIG_FILE"] = str(aws_config)
    script = (
        'set -o pipefail; "$AWS" s3 cp "s3://$BUCKET/$KEY" - --endpoint-url "$ENDPOINT" '
        '--only-show-errors | "$PG_RESTORE" --format=custom --no-owner --no-privileges '
        '--exit-on-error --no-password --dbname="$PGDATABASE"'
    )
    env.update(PG_RESTORE=server.bin("pg_restore"), AWS=_aws_cli(), BUCKET=bucket, KEY=key,
               ENDPOINT=s3srv.endpoint)
    started = time.monotonic()
    _, stderr, _, cpu = run_with_peak(["bash", "-c", script], env)
    seconds = time.monotonic() - started
    if stderr.strip():
        raise SystemExit(f"pipeline failed: {stderr}")
    how = "single GET" if aws_config else "awscli defaults: ranged GETs"
    return Sample(f"aws s3 cp - | pg_restore ({how}; no verification)", seconds, cpu)


def single_get_config(directory: Path) -> Path:
    """An awscli config under which a download of any dump is one streaming GET."""
    path = directory / "aws-config"
    path.write_text("[default]\ns3 =\n  multipart_threshold = 1TB\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--min-dump-mib", type=int, default=1024,
                        help="smallest dump to drill (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="restores of each kind")
    parser.add_argument("--no-default-awscli", action="store_true",
                        help="skip the one pipeline run with awscli's default (ranged GETs)")
    parser.add_argument("--zstd", action="store_true",
                        help="also back the database up as a zstd dump and drill that too "
                             "(its RTO beside the gzip dump's)")
    args = parser.parse_args()

    t0 = time.monotonic()
    server = pg.PostgresServer()
    s3srv = s3.S3Server()
    server.start()
    samples: list[Sample] = []
    try:
        s3srv.start()
        database = server.create_database("source")
        size_mib = int(args.min_dump_mib * DB_PER_DUMP)
        print(f"generating ~{size_mib} MiB ...", flush=True)
        started = time.monotonic()
        pg.seed_bulk(server, database, size_mib)
        db_size = pg.database_size(server, database)
        print(f"database: {db_size / MiB:.0f} MiB in {time.monotonic() - started:.0f}s",
              flush=True)
        bucket = s3srv.create_bucket("bench")
        started = time.monotonic()
        manifest = make_backup(server, s3srv, database, bucket)
        dump = manifest.artifact("postgres")
        assert dump is not None and manifest.postgres is not None
        print(f"backup: {dump.size_bytes / MiB:.0f} MiB dump in "
              f"{time.monotonic() - started:.0f}s", flush=True)
        if dump.size_bytes < args.min_dump_mib * MiB:
            raise SystemExit(f"dump is only {dump.size_bytes / MiB:.0f} MiB: raise DB_PER_DUMP")
        zstd = make_backup(server, s3srv, database, bucket, "zstd") if args.zstd else None
        server.drop_database(database)  # frees memory and disk for the restores

        aws_config = single_get_config(s3srv.dir)
        order: list[str] = []
        for round_ in range(args.rounds):
            # Alternate who goes first so that neither always gets a warm cache.
            kinds = ["pipeline", "drill"] + (["drill-zstd"] if zstd else [])
            order += kinds if round_ % 2 == 0 else kinds[::-1]
        if not args.no_default_awscli:
            order.append("default-awscli")
        for who in order:
            scratch = fresh_scratch(server, "scratch")
            if who.startswith("drill"):
                sample = drill(server, s3srv, bucket, scratch,
                               zstd if who == "drill-zstd" and zstd else manifest)
            else:
                config = aws_config if who == "pipeline" else None
                sample = pipeline(server, s3srv, bucket, dump.key, scratch, aws_config=config)
                counts = server.row_counts(scratch)
                if counts != manifest.postgres.row_counts:
                    raise SystemExit(f"pipeline restored {counts}")
            samples.append(sample)
            print(f"  {sample.who}: {sample.seconds:.1f}s", flush=True)
        server.drop_database("scratch")
    finally:
        s3srv.stop()
        server.stop()

    pipe = statistics.median(s.seconds for s in samples if "single GET" in s.who)
    ours = [s for s in samples if s.who.startswith("drill runner, gzip")]
    zstd_runs = [s for s in samples if s.who.startswith("drill runner, zstd")]
    rto = statistics.median(s.seconds for s in ours)
    print()
    print(f"machine: {machine_facts()}")
    print(f"database: {db_size / MiB:.0f} MiB (pg_database_size); dump "
          f"{dump.size_bytes / MiB:.0f} MiB; {args.rounds} round(s); "
          f"total {time.monotonic() - t0:.0f}s")
    print()
    print("| contender | seconds | CPU s client |")
    print("|---|---:|---:|")
    for s in samples:
        label = s.who.replace("|", "\\|")
        print(f"| {label} | {s.seconds:.1f} | {s.cpu_seconds:.1f} |")
    print()
    print("| median drill RTO | of which restore stream | median pipeline (single GET) | "
          "ratio drill/pipeline | drill peak RSS |")
    print("|---:|---:|---:|---:|---:|")
    restore = statistics.median(s.restore_seconds or 0 for s in ours)
    peak = max(s.peak_rss_bytes or 0 for s in ours)
    print(f"| {rto:.1f} s | {restore:.1f} s | {pipe:.1f} s | {rto / pipe:.3f} | "
          f"{peak / MiB:.0f} MiB |")
    if zstd_runs:
        zstd_rto = statistics.median(s.seconds for s in zstd_runs)
        print()
        print("| median drill RTO, gzip dump | median drill RTO, zstd dump | zstd / gzip |")
        print("|---:|---:|---:|")
        print(f"| {rto:.1f} s | {zstd_rto:.1f} s | {zstd_rto / rto:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
