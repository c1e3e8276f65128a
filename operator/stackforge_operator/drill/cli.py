"""``stackforge-operator drill run ...``: the command a drill Job's pod runs.

Secrets come only from the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
PGPASSWORD) and the scratch database only from libpq's PG* variables; nothing
secret is ever a flag.  SQL checks come from a file (a mounted ConfigMap) to
keep the argument list short.  The outcome is one JSON line of at most 4000
bytes on stdout (and in ``--termination-log``, for the pod's termination
message); progress goes to stderr; the full report goes to S3.
Exit 0: Passed.  Exit 1: Failed, with a CamelCase ``reason``.  Exit 2: bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from stackforge_operator import runner_process
from stackforge_operator.backup import store
from stackforge_operator.drill import check_login
from stackforge_operator.drill.checks import DEFAULT_QUERY_TIMEOUT_SECONDS, load_query_checks
from stackforge_operator.drill.grading import Objectives
from stackforge_operator.drill.runner import DrillRequest, PhysicalRecovery, run_drill
from stackforge_operator.drill.selection import BackupChoice, parse_time


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``drill run`` flags, for this module's parser and for cli.py's subcommand."""
    parser.add_argument("--tenant", required=True, help="tenant name (the key segment)")
    parser.add_argument("--run-id", help="drill run id (names the report); default: now + hex")
    parser.add_argument(
        "--backup", default="latest",
        help="'latest' (newest complete backup), a backup run id, or 'before=<ISO time>' "
        "(newest complete backup finished at or before it); default: %(default)s",
    )
    parser.add_argument(
        "--recovery-target",
        help="a Physical drill: the scratch database was restored from a pgBackRest "
        "repository to this moment ('latest' or an ISO time); verify it instead of "
        "restoring a dump (needs --repository; --backup does not apply)")
    parser.add_argument("--repository",
                        help="with --recovery-target: the repository's path in the bucket "
                        "(repo1-path), for the report")
    parser.add_argument("--wait-seconds", type=float, default=0,
                        help="how long the database may take to answer: with "
                        "--recovery-target the restored one (it may still be restoring; "
                        "counted from --started-at), else the one the dump goes into (to "
                        "accept connections); default: not at all")
    store.add_location_arguments(parser)
    parser.add_argument("--started-at",
                        help="when the drill started (ISO 8601), the origin of RTO and RPO; "
                        "default: now")
    parser.add_argument("--rto-seconds", type=float,
                        help="recovery time objective; unset: RTO is measured, not graded")
    parser.add_argument("--rpo-seconds", type=float,
                        help="recovery point objective; unset: RPO is measured, not graded")
    parser.add_argument("--checks-file", type=Path,
                        help="JSON list of SQL checks: [{name, sql, expected | expectedRows, "
                        "database?}]")
    parser.add_argument("--no-row-counts", action="store_true",
                        help="skip comparing every table's row count with the manifest")
    parser.add_argument("--no-checksum", action="store_true",
                        help="skip comparing the dump's SHA-256 with the manifest's (no "
                        "Checksum check is reported; a Physical drill has no dump)")
    parser.add_argument("--query-timeout-seconds", type=float,
                        default=DEFAULT_QUERY_TIMEOUT_SECONDS,
                        help="statement timeout of each SQL check (default: %(default)s)")
    parser.add_argument(
        "--checks-read", choices=check_login.READ_ACCESS, default="schemas",
        help="what the SQL checks' login role reads: 'schemas' (SELECT granted on every "
        "table of the non-system schemas; for a throw-away copy: the grants are ACL entries) "
        "or 'all-data' (a member of pg_read_all_data, which also reads pg_authid; for a "
        "tenant's own database, whose ACLs must stay as they are); default: %(default)s")
    parser.add_argument("--keep-owners", action="store_true",
                        help="restore the dump with its owners and grants, in one transaction, "
                        "making the roles it names where missing (NOLOGIN): a tenant's "
                        "database, not a scratch one (not with --recovery-target)")
    parser.add_argument("--no-report", action="store_true",
                        help="write no report to the bucket (the result line only)")
    parser.add_argument("--pg-bin-dir", type=Path,
                        help="directory of pg_restore and psql; default: PATH")
    parser.add_argument("--termination-log", type=Path,
                        help="also write the result line here (e.g. /dev/termination-log)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stackforge-operator drill run", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(parser)
    return parser


def _positive(parser: argparse.ArgumentParser, flag: str, value: float | None) -> None:
    if value is not None and value <= 0:
        parser.error(f"{flag} must be positive")


def request_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> DrillRequest:
    try:
        choice = BackupChoice.parse(args.backup)
    except ValueError as exc:
        parser.error(f"--backup: {exc}")
    started_at = None
    if args.started_at:
        try:
            started_at = parse_time(args.started_at)
        except ValueError as exc:
            parser.error(f"--started-at: {exc}")
    _positive(parser, "--rto-seconds", args.rto_seconds)
    _positive(parser, "--rpo-seconds", args.rpo_seconds)
    _positive(parser, "--query-timeout-seconds", args.query_timeout_seconds)
    if args.wait_seconds < 0:
        parser.error("--wait-seconds must not be negative")
    recovery = None
    if args.recovery_target is not None:
        recovery = _recovery(args, parser)
        if args.keep_owners:
            parser.error("--keep-owners restores a dump: it does not go with --recovery-target")
    elif args.repository is not None:
        parser.error("--repository only goes with --recovery-target")
    queries = []
    if args.checks_file:
        try:
            queries = load_query_checks(args.checks_file)
        except ValueError as exc:
            parser.error(f"--checks-file: {exc}")
    return DrillRequest(
        tenant=args.tenant,
        store=store.config_from_arguments(args),
        backup=choice,
        run_id=args.run_id,
        started_at=started_at,
        objectives=Objectives(args.rto_seconds, args.rpo_seconds),
        row_counts=not args.no_row_counts,
        checksum=not args.no_checksum,
        queries=tuple(queries),
        pg_bin_dir=args.pg_bin_dir,
        query_timeout_seconds=args.query_timeout_seconds,
        checks_read=args.checks_read,
        recovery=recovery,
        keep_owners=args.keep_owners,
        write_report=not args.no_report,
        connect_wait_seconds=0 if recovery is not None else args.wait_seconds,
    )


def _recovery(args: argparse.Namespace, parser: argparse.ArgumentParser) -> PhysicalRecovery:
    if args.backup.strip().lower() != "latest":
        parser.error("--backup names a dump: it does not go with --recovery-target")
    if not args.repository or not args.repository.startswith("/"):
        parser.error("--recovery-target needs --repository, an absolute repository path")
    if args.recovery_target.strip().lower() == "latest":
        return PhysicalRecovery(args.repository, wait_seconds=args.wait_seconds)
    try:
        return PhysicalRecovery(args.repository, parse_time(args.recovery_target),
                                wait_seconds=args.wait_seconds)
    except ValueError as exc:
        parser.error(f"--recovery-target: {exc}")


def run_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    request = request_from_args(args, parser)
    runner_process.prepare()
    outcome = run_drill(request)
    runner_process.report(outcome.to_json_line(), args.termination_log)
    return 0 if outcome.passed else 1


def main_drill_run(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``stackforge-operator drill run``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_from_args(args, parser)


if __name__ == "__main__":
    sys.exit(main_drill_run())
