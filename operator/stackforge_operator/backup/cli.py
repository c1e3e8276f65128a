"""``stackforge-operator backup run ...``: the command a backup Job's pod runs.

Secrets come only from the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
PGPASSWORD, GRAFANA_TOKEN) and the connection from libpq's PG* variables;
nothing secret is ever a flag.  The outcome is one JSON line on stdout (and in
``--termination-log``, for the pod's termination message); progress goes to
stderr.  Exit 0: a complete backup exists for the run id.  Exit 1: the run
failed, with a CamelCase ``reason``.  Exit 2: bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from stackforge_operator import runner_process
from stackforge_operator.backup import store
from stackforge_operator.backup.dump_format import DumpCompression
from stackforge_operator.backup.runner import BackupRequest, run_backup
from stackforge_operator.backup.store import MiB
from stackforge_operator.models.backup import BackupTarget, SSEAlgorithm


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``backup run`` flags, for this module's parser and for cli.py's subcommand."""
    parser.add_argument("--tenant", required=True, help="tenant name (the key segment)")
    parser.add_argument("--run-id", help="YYYYMMDDTHHMMSSZ-<suffix>; default: now + random hex")
    store.add_location_arguments(parser)
    parser.add_argument("--sse", choices=[a.value for a in SSEAlgorithm],
                        help="server-side encryption; default: the bucket's setting")
    parser.add_argument("--kms-key-id", help="KMS key for --sse aws:kms")
    parser.add_argument(
        "--targets",
        help="comma-separated: Postgres,Configuration,GrafanaDashboards; default: Postgres, "
        "plus Configuration with --config-file and GrafanaDashboards with --grafana-url",
    )
    parser.add_argument("--config-file", type=Path,
                        help="the tenant's rendered objects, as JSON, to store beside the dump")
    parser.add_argument("--grafana-url", help="Grafana base URL; token from GRAFANA_TOKEN")
    parser.add_argument("--pg-bin-dir", type=Path,
                        help="directory of pg_dump and psql; default: PATH")
    parser.add_argument("--dump-compression", choices=[c.value for c in DumpCompression],
                        default=DumpCompression.GZIP.value,
                        help="gzip: pg_dump's own (default); zstd: an uncompressed archive "
                             "compressed by zstd while it streams")
    parser.add_argument("--part-size-mib", type=int, default=8,
                        help="multipart part size; 10,000 parts at most (default: %(default)s)")
    parser.add_argument("--connect-wait-seconds", type=float, default=0.0,
                        help="ask a database that refuses or does not answer again for this "
                             "long before failing DatabaseUnreachable (default: %(default)s)")
    parser.add_argument("--termination-log", type=Path,
                        help="also write the result line here (e.g. /dev/termination-log)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stackforge-operator backup run", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(parser)
    return parser


def _targets(args: argparse.Namespace, parser: argparse.ArgumentParser) -> frozenset[BackupTarget]:
    if args.targets:
        try:
            targets = frozenset(BackupTarget(t.strip()) for t in args.targets.split(",") if t)
        except ValueError as exc:
            parser.error(f"--targets: {exc}")
    else:
        targets = frozenset({BackupTarget.POSTGRES})
        if args.config_file:
            targets |= {BackupTarget.CONFIGURATION}
        if args.grafana_url:
            targets |= {BackupTarget.GRAFANA_DASHBOARDS}
    if BackupTarget.CONFIGURATION in targets and not args.config_file:
        parser.error("--targets includes Configuration: --config-file is required")
    if BackupTarget.GRAFANA_DASHBOARDS in targets and not args.grafana_url:
        parser.error("--targets includes GrafanaDashboards: --grafana-url is required")
    return targets


def request_from_args(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> BackupRequest:
    sse = SSEAlgorithm(args.sse) if args.sse else None
    if (args.kms_key_id is not None) != (sse == SSEAlgorithm.KMS):
        parser.error("--kms-key-id goes with --sse aws:kms, and only with it")
    if args.connect_wait_seconds < 0:
        parser.error("--connect-wait-seconds must not be negative")
    if args.part_size_mib < 5:
        parser.error("--part-size-mib must be at least 5 (S3's minimum part size)")
    return BackupRequest(
        tenant=args.tenant,
        store=store.config_from_arguments(args, sse=sse, kms_key_id=args.kms_key_id),
        run_id=args.run_id,
        targets=_targets(args, parser),
        configuration_file=args.config_file,
        grafana_url=args.grafana_url,
        pg_bin_dir=args.pg_bin_dir,
        part_size=args.part_size_mib * MiB,
        compression=DumpCompression(args.dump_compression),
        connect_wait_seconds=args.connect_wait_seconds,
    )


def run_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    request = request_from_args(args, parser)
    runner_process.prepare()
    outcome = run_backup(request)
    runner_process.report(outcome.to_json_line(), args.termination_log)
    return 0 if outcome.succeeded else 1


def main_backup_run(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``stackforge-operator backup run``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_from_args(args, parser)


if __name__ == "__main__":
    sys.exit(main_backup_run())
