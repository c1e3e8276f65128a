"""Verification of the restored database through ``psql``: row counts, SQL checks, SELECT 1.

Every session is read-only (``default_transaction_read_only``): verifying
must not change what it verifies.  A user's SQL reaches psql on stdin as a
quoted literal run by ``\\gexec``, so it is sent to the server as one query
string (several statements run together, the last one's result counts) and
never appears in an argument list. The user's SQL logs in as a role of its
own, never the superuser's (check_login.py); the runner's own checks (row
counts, recovery) are the superuser's.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from secrets import token_hex
from typing import Annotated, Any, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from stackforge_operator.backup.failures import redact
from stackforge_operator.backup.postgres import ROW_COUNT_QUERY, libpq_env
from stackforge_operator.drill.grading import MAX_CHECK_NAME, clip
from stackforge_operator.drill.selection import parse_time
from stackforge_operator.models.drill import CheckKind, CheckResult

APPLICATION_NAME = "stackforge-drill/psql"
# The user's SQL checks: their own login (check_login.py), their own name in pg_stat_activity.
CHECKS_APPLICATION_NAME = "stackforge-drill/checks"
DEFAULT_QUERY_TIMEOUT_SECONDS = 300
# A check's SQL may SET statement_timeout = 0 (a user's setting: no grant
# takes it away), so psql itself gets the timeout plus this, then is killed;
# the session it leaves is ended with the checks' role (check_login.drop).
CLIENT_GRACE_SECONDS = 5
CHECKSUM_NAME = "postgres.dump"
CONNECTIVITY_NAME = "connectivity"
ROW_COUNTS_NAME = "row-counts"
RECOVERY_NAME = "recovery"
# Whether the server still recovers, and the commit time of the last transaction
# its recovery replayed (it stays after the promotion), in UTC.
RECOVERY_QUERY = (
    "SELECT pg_is_in_recovery()::text || ' ' || coalesce(to_char("
    "pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', "
    "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '-')"
)


def _scalar_text(value: Any) -> Any:
    # JSON numbers are accepted for convenience and compared as psql prints them.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


class QueryCheckSpec(BaseModel):
    """One SQL check from ``--checks-file``: the DRDrill's ``spec.checks.queries`` item.

    ``expected`` (or ``expectedValue``) is the first column of the first row
    as text; ``expectedRows`` the number of rows.  Exactly one of them.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=MAX_CHECK_NAME)]
    sql: Annotated[str, Field(min_length=1, max_length=65536)]
    database: str | None = None
    expected_value: Annotated[str | None, BeforeValidator(_scalar_text)] = Field(
        None, validation_alias=AliasChoices("expected", "expectedValue", "expected_value")
    )
    expected_rows: Annotated[int | None, Field(ge=0)] = None

    @model_validator(mode="after")
    def _one_expectation(self) -> Self:
        if (self.expected_value is None) == (self.expected_rows is None):
            raise ValueError(f"check {self.name!r}: set exactly one of expected or expectedRows")
        return self


def load_query_checks(path: Path) -> list[QueryCheckSpec]:
    """Parse a checks file: a JSON list of checks, or ``{"queries": [...]}``; ValueError if bad."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from exc
    if isinstance(data, dict) and set(data) == {"queries"}:
        data = data["queries"]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of checks")
    try:
        checks = [QueryCheckSpec.model_validate(item) for item in data]
    except ValidationError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    names = [c.name for c in checks]
    if duplicates := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"{path}: duplicate check names: {', '.join(duplicates)}")
    return checks


def check_result(
    name: str,
    kind: CheckKind,
    passed: bool,
    *,
    expected: str | None = None,
    actual: str | None = None,
    message: str | None = None,
) -> CheckResult:
    """A CheckResult with every text cut to what the status schema allows."""
    return CheckResult(
        name=clip(name, MAX_CHECK_NAME) or "", kind=kind, passed=passed,
        expected=clip(expected), actual=clip(actual), message=clip(message),
    )


def checksum_check(expected: str, actual: str, size: int, expected_size: int) -> CheckResult:
    passed = expected == actual and size == expected_size
    message = None
    if not passed:
        message = f"sha256 of the {size} bytes read differs from the manifest's"
        if size != expected_size:
            message += f" (manifest: {expected_size} bytes)"
    return check_result(CHECKSUM_NAME, CheckKind.CHECKSUM, passed,
                        expected=expected, actual=actual, message=message)


def compare_row_counts(
    expected: Mapping[str, int], actual: Mapping[str, int]
) -> list[CheckResult]:
    """One RowCount check per table of either side, by table name."""
    results = []
    for table in sorted(set(expected) | set(actual)):
        if table not in actual:
            results.append(check_result(
                table, CheckKind.ROW_COUNT, False, expected=str(expected[table]),
                message=f"table {table} is missing from the restored database",
            ))
        elif table not in expected:
            results.append(check_result(
                table, CheckKind.ROW_COUNT, False, actual=str(actual[table]),
                message=f"table {table} is in the restored database but not in the backup",
            ))
        else:
            results.append(check_result(
                table, CheckKind.ROW_COUNT, expected[table] == actual[table],
                expected=str(expected[table]), actual=str(actual[table]),
            ))
    return results


@dataclass(frozen=True)
class QueryAnswer:
    """The last statement's result: its rows, and its first column's first value."""

    rows: int
    first_value: str | None


def parse_csv_answer(text: str) -> QueryAnswer:
    """psql's ``--csv`` output (a header, then rows); empty for a statement without rows."""
    records = list(csv.reader(io.StringIO(text)))
    if not records:
        return QueryAnswer(0, None)
    rows = records[1:]
    first = rows[0][0] if rows and rows[0] else None
    return QueryAnswer(len(rows), first)


class QueryFailed(Exception):  # noqa: N818 - carries psql's message to the CheckResult
    pass


def dollar_quoted(text: str) -> str:
    """``text`` as a dollar-quoted literal whose tag it does not contain.

    Quoted by doubling its quotes, a check's SQL could end the literal where
    the database sets standard_conforming_strings off (its owner may): psql then
    reads a backslash before a quote as escaping it, and what followed ran as
    psql's own commands (``\\!`` a shell, with the runner's environment). A
    dollar-quoted body is read as it is, whatever that setting says."""
    while True:
        tag = f"$q{token_hex(6)}$"
        if tag not in text:
            return f"{tag}{text}{tag}"


class Psql:
    """Runs read-only SQL against the scratch database (libpq's env names it)."""

    def __init__(
        self,
        psql: str,
        env: Mapping[str, str],
        *,
        query_timeout_seconds: float = DEFAULT_QUERY_TIMEOUT_SECONDS,
        secrets: Sequence[str] = (),
        application: str = APPLICATION_NAME,
    ) -> None:
        self._psql = psql
        env = libpq_env(env, application)
        options = [env.get("PGOPTIONS", ""), "-c default_transaction_read_only=on"]
        env["PGOPTIONS"] = " ".join(o for o in options if o)
        self._env = env
        self._timeout_ms = int(query_timeout_seconds * 1000)
        self._secrets = list(secrets)

    def _run(
        self, script: str, args: Sequence[str], database: str | None, timeout_ms: int | None
    ) -> str:
        env = dict(self._env)
        if database:
            env["PGDATABASE"] = database
        statement_seconds = client_timeout = None
        if timeout_ms:
            env["PGOPTIONS"] += f" -c statement_timeout={timeout_ms}"
            statement_seconds = timeout_ms / 1000
            client_timeout = statement_seconds + CLIENT_GRACE_SECONDS
        try:
            result = subprocess.run(
                [self._psql, "--no-psqlrc", "--quiet", "--no-password",
                 "--set=ON_ERROR_STOP=1", *args, "--file=-"],
                input=script, capture_output=True, text=True, env=env, check=False,
                timeout=client_timeout,
            )
        except subprocess.TimeoutExpired:
            raise QueryFailed(
                f"no answer within {client_timeout:g} s, though the statement timeout "
                f"is {statement_seconds:g} s (did the check set it aside?)") from None
        if result.returncode != 0:
            stderr = result.stderr.strip() or f"psql exited {result.returncode}"
            raise QueryFailed(redact(stderr, self._secrets))
        return result.stdout

    def query(self, sql: str, database: str | None = None) -> QueryAnswer:
        """``sql`` as one query string; the last statement's result."""
        literal = dollar_quoted(sql)
        # SHOW_ALL_RESULTS (psql 15+; older ones show only the last anyway).
        script = f"\\set SHOW_ALL_RESULTS off\nSELECT {literal} \\gexec\n"
        return parse_csv_answer(self._run(script, ["--csv"], database, self._timeout_ms))

    def row_counts(self) -> dict[str, int]:
        out = self._run(ROW_COUNT_QUERY, ["--no-align", "--tuples-only"], None, None)
        return {k: int(v) for k, v in json.loads(out).items()}


def connectivity_check(psql: Psql) -> CheckResult:
    try:
        answer = psql.query("SELECT 1")
    except QueryFailed as exc:
        return check_result(CONNECTIVITY_NAME, CheckKind.CONNECTIVITY, False,
                            expected="1", message=str(exc))
    return check_result(CONNECTIVITY_NAME, CheckKind.CONNECTIVITY, answer.first_value == "1",
                        expected="1", actual=answer.first_value)


def row_count_checks(psql: Psql, expected: Mapping[str, int]) -> list[CheckResult]:
    try:
        actual = psql.row_counts()
    except (QueryFailed, ValueError) as exc:
        return [check_result(ROW_COUNTS_NAME, CheckKind.ROW_COUNT, False,
                             message=f"counting rows: {exc}")]
    return compare_row_counts(expected, actual)


def _expected(spec: QueryCheckSpec) -> str | None:
    return str(spec.expected_rows) if spec.expected_rows is not None else spec.expected_value


def query_check(psql: Psql, spec: QueryCheckSpec) -> CheckResult:
    expected = _expected(spec)
    try:
        answer = psql.query(spec.sql, spec.database)
    except QueryFailed as exc:
        return check_result(spec.name, CheckKind.QUERY, False, expected=expected,
                            message=str(exc))
    if spec.expected_rows is not None:
        passed = answer.rows == spec.expected_rows
        message = None if passed else f"expected {expected} rows, got {answer.rows}"
        return check_result(spec.name, CheckKind.QUERY, passed, expected=expected,
                            actual=str(answer.rows), message=message)
    return check_result(spec.name, CheckKind.QUERY, answer.first_value == spec.expected_value,
                        expected=expected, actual=answer.first_value)


def not_run(spec: QueryCheckSpec, why: str) -> CheckResult:
    """A failed Query check that was never sent to the server, and why."""
    return check_result(spec.name, CheckKind.QUERY, False, expected=_expected(spec),
                        message=f"not run: {why}")


def recovery_check(psql: Psql, target: datetime | None) -> tuple[CheckResult, datetime | None]:
    """A physical restore: promoted (recovery over), its last replayed transaction
    at or before ``target`` (None: the end of the archive, any is right).

    Also returns that transaction's commit time, the restore's recovery point
    (None when recovery replayed no transaction).
    """
    expected = "promoted" + (f", no transaction after {target.isoformat()}" if target else "")
    try:
        answer = psql.query(RECOVERY_QUERY)
    except QueryFailed as exc:
        return check_result(RECOVERY_NAME, CheckKind.RECOVERY, False, expected=expected,
                            message=str(exc)), None
    state, _, replayed_text = (answer.first_value or "").partition(" ")
    try:
        replayed = None if replayed_text in ("", "-") else parse_time(replayed_text)
    except ValueError:
        replayed = None
    promoted = state == "false"
    actual = ("promoted" if promoted else "in recovery") + (
        f", last transaction replayed {replayed.isoformat()}" if replayed
        else ", no transaction replayed")
    problems = []
    if not promoted:
        problems.append("the server is still in recovery: it was not promoted")
    if target is not None and replayed is not None and replayed > target:
        problems.append("recovery replayed a transaction committed after the target")
    return check_result(RECOVERY_NAME, CheckKind.RECOVERY, not problems, expected=expected,
                        actual=actual, message="; ".join(problems) or None), replayed
