"""A drill's SQL checks (``--checks-file``), run as a login made for them and dropped after.

The same for a dump's drill, a Physical one and an in-place recovery's
verification: the superuser (libpq's environment) makes the role
(check_login.py), asks in each database a check names what the role may do
there, and runs a check only where the role may read tables and nothing of
the server's files, programs or roles. What it reads (``access``) is the one
difference: per-schema grants in a drill's throw-away copy, pg_read_all_data
in a tenant's own database, whose ACLs must stay as restored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from stackforge_operator.drill import check_login
from stackforge_operator.drill import checks as verify
from stackforge_operator.models.drill import CheckResult

log = logging.getLogger("stackforge_operator.drill")


def run(psql: str, env: Mapping[str, str], queries: Sequence[verify.QueryCheckSpec], *,
        query_timeout_seconds: float, secrets: list[str],
        access: check_login.ReadAccess = "schemas") -> list[CheckResult]:
    """Each check's result, in order. The login's password joins ``secrets`` (the
    run's list of what no message may show)."""
    login = check_login.CheckLogin.new()
    secrets.append(login.password)
    try:
        check_login.create(psql, env, login, access=access, secrets=secrets,
                           seconds=check_login.valid_seconds(len(queries),
                                                             query_timeout_seconds))
    except check_login.LoginFailed as exc:
        # The role may exist all the same (a failure after CREATE ROLE): dropped below.
        failure = f"the checks' login role could not be made: {exc}"
        _drop(psql, env, login, [None], secrets)
        return [verify.not_run(spec, failure) for spec in queries]
    checker = verify.Psql(psql, login.env(env), secrets=secrets,
                          query_timeout_seconds=query_timeout_seconds,
                          application=verify.CHECKS_APPLICATION_NAME)
    # Per database a check names (None: the default): why no check runs there.
    refused: dict[str | None, str | None] = {}
    reached: list[str] = []  # the named databases the superuser could ask in
    results = []
    try:
        for spec in queries:
            if spec.database not in refused:
                refused[spec.database] = _refused(psql, env, login, spec.database, access,
                                                  secrets, reached)
            why = refused[spec.database]
            results.append(verify.not_run(spec, why) if why else verify.query_check(checker, spec))
    finally:
        # What the role may own is dropped where it could log in; the default
        # database last, where the role itself goes.
        _drop(psql, env, login, [*reached, None], secrets)
    return results


def _refused(psql: str, env: Mapping[str, str], login: check_login.CheckLogin,
             database: str | None, access: check_login.ReadAccess, secrets: Sequence[str],
             reached: list[str]) -> str | None:
    """Why no check runs as the login in ``database``; None: they may."""
    try:
        found = check_login.refusals(psql, env, login, database, access=access,
                                     secrets=secrets)
    except check_login.LoginFailed as exc:
        return f"asking what the checks' login role may do: {exc}"
    if database is not None:
        reached.append(database)
    if not found:
        return None
    where = f" in database {database}" if database else ""
    return f"the checks' login role {'; '.join(found)}{where}: no check runs as it"


def _drop(psql: str, env: Mapping[str, str], login: check_login.CheckLogin,
          databases: Sequence[str | None], secrets: Sequence[str]) -> None:
    # A role left behind logs in no more (NOLOGIN first; VALID UNTIL): worth a
    # warning, not a failed drill.
    for error in check_login.drop(psql, env, login, databases=databases, secrets=secrets):
        log.warning("%s", error)
