"""The roles a restore that keeps owners and grants needs, made where they are missing.

``pg_restore`` without ``--no-owner``/``--no-privileges`` replays every
``ALTER ... OWNER TO`` and ``GRANT ... TO`` of the dump: in a single
transaction, one role the target lacks undoes the whole restore. The
backup's manifest lists the roles the dump names (backup/postgres.py); a
missing one is made ``NOLOGIN``: it owns and holds what it held, and nobody
can log in as it until a person decides who should (its password was never
in the dump).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence

from stackforge_operator.backup.failures import redact
from stackforge_operator.backup.postgres import libpq_env, privileged_env
from stackforge_operator.drill.checks import check_result
from stackforge_operator.models.drill import CheckKind, CheckResult

APPLICATION_NAME = "stackforge-drill/roles"
ROLES_NAME = "roles"


# psql input: prints the missing roles (comma-separated), then makes them. The
# names arrive as one JSON value in the psql variable ``roles`` (quoted by psql
# with :'roles') and become identifiers through format('%I') on the server: no
# name can end a statement.
SCRIPT = """\
SELECT coalesce(string_agg(r, ',' ORDER BY r), '')
  FROM json_array_elements_text(:'roles'::json) AS r
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r);
SELECT format('CREATE ROLE %I NOLOGIN', r)
  FROM json_array_elements_text(:'roles'::json) AS r
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \\gexec
"""


def ensure(psql: str, env: Mapping[str, str], roles: Sequence[str],
           secrets: Sequence[str] = ()) -> CheckResult:
    """Make the roles of ``roles`` the database (libpq's env) lacks; the check says which."""
    if not roles:
        return check_result(
            ROLES_NAME, CheckKind.ROLES, True,
            message="the backup's manifest lists no roles (an older backup): a role the "
                    "dump names and the database lacks fails the restore")
    result = subprocess.run(
        [psql, "--no-psqlrc", "--quiet", "--no-password", "--set=ON_ERROR_STOP=1",
         "--no-align", "--tuples-only", f"--set=roles={json.dumps(list(roles))}", "--file=-"],
        input=SCRIPT, capture_output=True, text=True,
        env=privileged_env(libpq_env(env, APPLICATION_NAME)), check=False)
    wanted = ", ".join(roles)
    if result.returncode != 0:
        stderr = result.stderr.strip() or f"psql exited {result.returncode}"
        return check_result(ROLES_NAME, CheckKind.ROLES, False, expected=wanted,
                            message=f"making the dump's roles: {redact(stderr, secrets)}")
    made = (result.stdout.strip().splitlines() or [""])[0]
    return check_result(
        ROLES_NAME, CheckKind.ROLES, True, expected=wanted, actual=wanted,
        message=f"made NOLOGIN (they were missing): {made.replace(',', ', ')}" if made else None)
