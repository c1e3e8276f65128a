"""Check parsing and comparison, the streaming restore with stand-in tools, and the CLI."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stackforge_operator.cli import build_parser as build_main_parser
from stackforge_operator.drill import cli
from stackforge_operator.drill.checks import (
    QueryCheckSpec,
    checksum_check,
    compare_row_counts,
    load_query_checks,
    not_run,
    parse_csv_answer,
)
from stackforge_operator.drill.restore import pg_restore_argv, stream_restore
from stackforge_operator.drill.runner import DrillRequest, PhysicalRecovery, report_key
from stackforge_operator.drill.selection import SelectionKind
from stackforge_operator.models.drill import CheckKind

# ---------------------------------------------------------------------- checks


def test_row_counts_name_every_table_that_differs() -> None:
    results = compare_row_counts(
        {"public.a": 3, "public.b": 5, "shop.gone": 7},
        {"public.a": 3, "public.b": 4, "public.extra": 1},
    )
    assert [(r.name, r.kind, r.passed) for r in results] == [
        ("public.a", CheckKind.ROW_COUNT, True),
        ("public.b", CheckKind.ROW_COUNT, False),
        ("public.extra", CheckKind.ROW_COUNT, False),
        ("shop.gone", CheckKind.ROW_COUNT, False),
    ]
    assert (results[1].expected, results[1].actual) == ("5", "4")
    assert results[3].message == "table shop.gone is missing from the restored database"
    assert "not in the backup" in (results[2].message or "")


def test_checksum_check() -> None:
    assert checksum_check("a" * 64, "a" * 64, 10, 10).passed
    bad = checksum_check("a" * 64, "b" * 64, 10, 10)
    assert not bad.passed and bad.kind == CheckKind.CHECKSUM and bad.actual == "b" * 64
    short = checksum_check("a" * 64, "a" * 64, 9, 10)
    assert not short.passed and "manifest: 10 bytes" in (short.message or "")


@pytest.mark.parametrize(
    ("text", "rows", "first"),
    [
        ("", 0, None),  # a statement without a result (SET, ...)
        ("count\n", 0, None),  # a query with no rows
        ("count\n4000\n", 1, "4000"),
        ('a,b\n"x, ""y""",2\n"multi\nline",3\n', 2, 'x, "y"'),
        ("a\n\n", 1, None),  # one row, one empty value: psql prints an empty line
    ],
)
def test_csv_answers(text: str, rows: int, first: str | None) -> None:
    answer = parse_csv_answer(text)
    assert (answer.rows, answer.first_value) == (rows, first)


def _checks_file(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "checks.json"
    path.write_text(json.dumps(data))
    return path


def test_checks_file_in_both_shapes(tmp_path: Path) -> None:
    items = [
        {"name": "a", "sql": "SELECT 1", "expected": "1"},
        {"name": "b", "sql": "SELECT 1", "expectedValue": 42},
        {"name": "c", "sql": "SELECT 1", "expectedRows": 1, "database": "app"},
    ]
    for data in (items, {"queries": items}):
        checks = load_query_checks(_checks_file(tmp_path, data))
        assert [(c.name, c.expected_value, c.expected_rows) for c in checks] == [
            ("a", "1", None), ("b", "42", None), ("c", None, 1),
        ]
    assert checks[2].database == "app"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ([{"name": "a", "sql": "SELECT 1"}], "exactly one"),
        ([{"name": "a", "sql": "SELECT 1", "expected": "1", "expectedRows": 1}], "exactly one"),
        ([{"name": "a", "sql": "SELECT 1", "expected": "1", "typo": 1}], "typo"),
        ([{"name": "a", "sql": "", "expected": "1"}], "sql"),
        ([{"name": "a", "sql": "SELECT 1", "expected": "1"}] * 2, "duplicate check names: a"),
        ({"name": "a"}, "expected a JSON list"),
    ],
)
def test_bad_checks_files_are_refused(tmp_path: Path, data: object, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        load_query_checks(_checks_file(tmp_path, data))


def test_checks_file_unreadable_or_not_json(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="No such file"):
        load_query_checks(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("[{")
    with pytest.raises(ValueError, match="not JSON"):
        load_query_checks(tmp_path / "x.json")


def test_the_model_shape_of_a_query_check_is_accepted() -> None:
    # What the operator renders from DRDrill spec.checks.queries (camelCase, by alias).
    spec = QueryCheckSpec.model_validate(
        {"name": "n", "database": "app", "sql": "SELECT 1", "expectedValue": "1"}
    )
    assert spec.expected_value == "1"


# ---------------------------------------------------------------------- streaming restore


def _tool(tmp_path: Path, name: str, script: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return str(path)


def test_stream_restore_feeds_stdin_and_hashes_every_byte(tmp_path: Path) -> None:
    out = tmp_path / "received"
    tool = _tool(tmp_path, "pg_restore", f'cat > "{out}"')
    chunks = [bytes([i]) * 100_000 for i in range(30)]
    result = stream_restore(iter(chunks), tool, {"PATH": "/usr/bin:/bin"})
    data = b"".join(chunks)
    assert out.read_bytes() == data
    assert (result.size_bytes, result.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert result.restored and not result.cut_short


def test_with_an_expected_hash_the_archives_end_goes_only_to_a_matching_object(
    tmp_path: Path,
) -> None:
    """A restore into a tenant's database is one transaction, but its hash was
    compared after pg_restore had committed: a corrupt object's rows stayed."""
    out = tmp_path / "received"
    tool = _tool(tmp_path, "pg_restore", f'cat > "{out}"')
    chunks = [bytes([i]) * 100_000 for i in range(30)]
    data = b"".join(chunks)
    good = hashlib.sha256(data).hexdigest()
    matching = stream_restore(iter(chunks), tool, {"PATH": "/usr/bin:/bin"},
                              expected_sha256=good)
    assert out.read_bytes() == data and matching.sha256 == good
    assert matching.restored and not matching.cut_short
    other = stream_restore(iter(chunks), tool, {"PATH": "/usr/bin:/bin"},
                           expected_sha256="0" * 64)
    # Everything but the last piece: pg_restore cannot finish the archive.
    assert out.read_bytes() == data[:-len(chunks[-1])]
    assert other.sha256 == good and other.cut_short


def test_a_restore_that_dies_early_still_hashes_the_whole_object(tmp_path: Path) -> None:
    tool = _tool(tmp_path, "pg_restore",
                 'head -c 1000 > /dev/null; echo "pg_restore: error: bad block" >&2; exit 1')
    chunks = [b"x" * 1_000_000 for _ in range(8)]
    result = stream_restore(iter(chunks), tool, {"PATH": "/usr/bin:/bin"})
    assert result.exit_code == 1 and not result.restored and result.cut_short
    assert result.sha256 == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert result.stderr_tail == "pg_restore: error: bad block"


def test_pg_restore_argv_names_no_connection() -> None:
    argv = pg_restore_argv("/usr/bin/pg_restore")
    assert argv[-1] == "--dbname="  # empty: libpq takes PGDATABASE
    assert {"--no-owner", "--no-privileges", "--exit-on-error"} <= set(argv)
    # Into a tenant's database: owners and grants kept, all or nothing.
    kept = pg_restore_argv("/usr/bin/pg_restore", keep_owners=True)
    assert kept[-1] == "--dbname=" and "--single-transaction" in kept
    assert not {"--no-owner", "--no-privileges"} & set(kept)


# ---------------------------------------------------------------------- command line


def _parse(*argv: str) -> DrillRequest:
    parser = cli.build_parser()
    return cli.request_from_args(parser.parse_args(list(argv)), parser)


BASE = ("--tenant", "acme", "--bucket", "backups")


def test_defaults() -> None:
    request = _parse(*BASE)
    assert request.backup.kind == SelectionKind.LATEST
    assert request.row_counts and request.queries == ()
    assert request.started_at is None and request.objectives.rto_seconds is None
    assert request.store.prefix == "stackforge" and request.store.force_path_style is None


def test_everything(tmp_path: Path) -> None:
    checks = _checks_file(tmp_path, [{"name": "a", "sql": "SELECT 1", "expected": "1"}])
    request = _parse(
        *BASE, "--backup", "before=2026-11-27T02:00:00Z", "--started-at",
        "2026-11-27T03:00:00Z", "--rto-seconds", "900", "--rpo-seconds", "86400",
        "--checks-file", str(checks), "--no-row-counts", "--prefix", "/x/y/",
        "--endpoint", "http://s3:9000", "--force-path-style", "--run-id", "drill-7",
    )
    assert request.backup.before == datetime(2026, 11, 27, 2, tzinfo=UTC)
    assert request.started_at == datetime(2026, 11, 27, 3, tzinfo=UTC)
    assert (request.objectives.rto_seconds, request.objectives.rpo_seconds) == (900, 86400)
    assert [q.name for q in request.queries] == ["a"] and not request.row_counts
    assert request.store.prefix == "x/y" and request.store.force_path_style
    assert report_key(request.store, "acme", "20261127T020000Z-abcdef", "drill-7") == (
        "x/y/acme/20261127T020000Z-abcdef/drills/drill-7.json"
    )
    assert report_key(request.store, "acme", None, "drill-7") == "x/y/acme/drills/drill-7.json"


REPOSITORY = "/backups/_pgbackrest/acme/7400-20261129T000000Z"


def test_a_physical_drill_verifies_a_restore_to_its_target() -> None:
    request = _parse(*BASE, "--recovery-target", "2026-12-01T10:15:05+01:00",
                     "--repository", REPOSITORY, "--wait-seconds", "600")
    assert request.recovery == PhysicalRecovery(REPOSITORY, datetime(2026, 12, 1, 9, 15, 5,
                                                                       tzinfo=UTC), 600)
    assert "to 2026-12-01T10:15:05+01:00" in request.describe()
    latest = _parse(*BASE, "--recovery-target", "latest", "--repository", REPOSITORY)
    assert latest.recovery == PhysicalRecovery(REPOSITORY)
    assert "to the last archived moment" in latest.describe()
    assert _parse(*BASE).recovery is None


def test_a_dumps_restore_waits_for_its_database_as_long_as_asked() -> None:
    assert _parse(*BASE, "--wait-seconds", "20").connect_wait_seconds == 20
    assert _parse(*BASE).connect_wait_seconds == 0
    # A Physical drill's wait is for the restored database to answer (recovery).
    physical = _parse(*BASE, "--recovery-target", "latest", "--repository", REPOSITORY,
                      "--wait-seconds", "600")
    assert physical.connect_wait_seconds == 0 and physical.recovery is not None
    assert physical.recovery.wait_seconds == 600


def test_the_dumps_checksum_is_verified_unless_told_not_to() -> None:
    # A DRDrill's spec.checks.checksum: false reaches the runner as --no-checksum.
    assert _parse(*BASE).checksum
    assert not _parse(*BASE, "--no-checksum").checksum


def test_a_check_not_run_fails_saying_why() -> None:
    spec = QueryCheckSpec(name="n", sql="SELECT 1", expected_rows=2)
    result = not_run(spec, "no login")
    assert (result.kind, result.passed, result.expected, result.actual, result.message) == (
        CheckKind.QUERY, False, "2", None, "not run: no login")


def test_a_restore_into_a_tenant_keeps_owners_and_writes_no_report() -> None:
    request = _parse(*BASE, "--keep-owners", "--no-report")
    assert request.keep_owners and not request.write_report
    assert not _parse(*BASE).keep_owners and _parse(*BASE).write_report


@pytest.mark.parametrize(
    "extra",
    [
        ("--backup", "yesterday"),
        ("--started-at", "not a time"),
        ("--rto-seconds", "0"),
        ("--rpo-seconds", "-5"),
        ("--checks-file", "/nonexistent/checks.json"),
        ("--recovery-target", "yesterday", "--repository", REPOSITORY),
        ("--recovery-target", "latest"),
        ("--recovery-target", "latest", "--repository", "backups/relative"),
        ("--recovery-target", "latest", "--repository", REPOSITORY, "--wait-seconds", "-1"),
        ("--wait-seconds", "-1"),
        ("--repository", REPOSITORY),
        ("--backup", "20261127T020000Z-abcdef", "--recovery-target", "latest",
         "--repository", REPOSITORY),
        ("--keep-owners", "--recovery-target", "latest", "--repository", REPOSITORY),
    ],
)
def test_bad_arguments_exit_2(extra: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parse(*BASE, *extra)
    assert exc.value.code == 2
    assert extra[0] in capsys.readouterr().err


def test_the_operator_command_has_drill_run() -> None:
    args = build_main_parser().parse_args(["drill", "run", *BASE, "--backup", "latest"])
    assert args.tenant == "acme" and args.drill_run_parser is not None
