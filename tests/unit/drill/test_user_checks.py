"""The SQL checks' run: who makes the login, who runs each check, who drops it.

(Against a real server: tests/drill/test_runner.py, the checks' login tests.)
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from stackforge_operator.drill import user_checks
from stackforge_operator.drill.check_login import ROLE_PREFIX
from stackforge_operator.drill.checks import QueryCheckSpec
from tests.unit.drill.standin_psql import StandInPsql

ENV = {"PGHOST": "127.0.0.1", "PGUSER": "postgres", "PGPASSWORD": "superuser-pw",
       "PGDATABASE": "restore"}
QUERIES = (QueryCheckSpec(name="here", sql="SELECT 1 WHERE false", expected_rows=0),
           QueryCheckSpec(name="there", sql="SELECT 1 WHERE false", expected_rows=0,
                          database="app"))


def _run(psql: StandInPsql, env: dict[str, str], secrets: list[str]) -> list[tuple[str, bool]]:
    results = user_checks.run(str(psql.path), env, QUERIES, query_timeout_seconds=5,
                              secrets=secrets)
    return [(r.name, r.passed) for r in results]


def test_the_superuser_makes_and_drops_the_login_and_the_checks_run_as_it(
        tmp_path: Path) -> None:
    psql = StandInPsql(tmp_path)
    secrets = ["superuser-pw"]
    assert _run(psql, ENV, secrets) == [("here", True), ("there", True)]
    calls = psql.calls()
    role = next(c.user for c in calls if c.user != "postgres")
    assert role.startswith(ROLE_PREFIX)
    steps = [(c.user == role, c.database, "CREATE ROLE" in c.stdin, "DROP" in c.stdin)
             for c in calls]
    assert steps == [
        (False, "restore", True, False),  # made
        (False, "restore", False, False),  # what it may do, where "here" runs
        (True, "restore", False, False),  # "here"
        (False, "app", False, False),  # what it may do, where "there" runs
        (True, "app", False, False),  # "there"
        (False, "app", False, True),  # what it owns there dropped
        (False, "restore", False, True),  # and itself
    ]
    # Its password joined the run's secrets: no message shows it.
    assert len(secrets) == 2 and secrets[1] not in " ".join(c.stdin for c in calls)


def test_the_access_reaches_the_role_and_each_database_asked(tmp_path: Path) -> None:
    psql = StandInPsql(tmp_path)
    user_checks.run(str(psql.path), ENV, QUERIES, query_timeout_seconds=5, secrets=[],
                    access="all-data")
    made, *asked = [c for c in psql.calls() if c.user == "postgres" and "DROP" not in c.stdin]
    assert "IN ROLE pg_read_all_data" in made.stdin
    assert [c.database for c in asked] == ["restore", "app"]
    assert not any("GRANT" in c.stdin for c in asked)


def test_no_check_runs_where_the_login_may_do_more_than_read(tmp_path: Path) -> None:
    psql = StandInPsql(tmp_path)
    results = user_checks.run(str(psql.path), {**ENV, "ANSWER": "is CREATEROLE\n"}, QUERIES,
                              query_timeout_seconds=5, secrets=[])
    assert [(r.passed, r.message) for r in results] == [
        (False, "not run: the checks' login role is CREATEROLE: no check runs as it"),
        (False, "not run: the checks' login role is CREATEROLE in database app: "
                "no check runs as it"),
    ]
    assert {c.user for c in psql.calls()} == {"postgres"}


def test_a_login_that_cannot_be_made_runs_no_check_and_is_dropped_all_the_same(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    psql = StandInPsql(tmp_path)
    env = {**ENV, "STATUS": "2", "ERR": 'ERROR: role "pg_read_all_data" does not exist'}
    with caplog.at_level(logging.WARNING, "stackforge_operator.drill"):
        results = user_checks.run(str(psql.path), env, QUERIES, query_timeout_seconds=5,
                                  secrets=[])
    assert {r.message for r in results} == {
        "not run: the checks' login role could not be made: "
        'ERROR: role "pg_read_all_data" does not exist'}
    calls = psql.calls()
    assert len(calls) == 2 and "DROP ROLE" in calls[1].stdin
    assert "dropping the checks' role" in caplog.text
