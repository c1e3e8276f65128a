"""The login a drill's SQL checks run as: never the superuser.

A DRDrill's checks (``spec.checks.queries``) are SQL from whoever may create
DRDrills, who need not be allowed to read Secrets. Run as the superuser, a
check could read the server's environment (``pg_read_binary_file(
'/proc/self/environ')``, ``COPY ... FROM PROGRAM 'env'``): a Physical drill's
scratch server holds the bucket's secret key and the repository's cipher
passphrase there, and a check's answer lands in the DRDrill's status and in
the report. So the runner, as the superuser, makes a login role for the
checks in the server it verifies (after the restore, before the checks) and
drops it after them:

- a login of its own, not ``SET ROLE`` in the superuser's session: a check's
  SQL could ``RESET ROLE``. A session that logged in as the role cannot
  become anyone else (``SET SESSION AUTHORIZATION`` needs a superuser's).
- what it reads depends on whose database it is (``ReadAccess``):
  - ``schemas`` (a drill's scratch server, thrown away after the run): SELECT
    on every table and sequence of every schema but the system's, and USAGE
    of those schemas, granted in each database the checks use before they
    run there. Not ``pg_read_all_data``, which reads the system catalogs too,
    ``pg_authid`` and every role's password hash among them. The grants
    spell out ACLs that were the default before; in a copy that is removed
    after the run nobody sees them.
  - ``all-data`` (an in-place recovery's verification, in the tenant's own
    restored database, which lives on): a member of ``pg_read_all_data``,
    which grants nothing on any object, so the tenant's owners and grants stay
    exactly as restored. It reads ``pg_authid`` (a known limit, docs/api.md).
  Never SUPERUSER, CREATEROLE, CREATEDB or REPLICATION; ``BYPASSRLS`` for
  tables with row security. After making it the runner asks the server what
  the role may do, in every database the checks use: a restored tenant's
  database may have granted more to PUBLIC (or to pg_read_all_data), and then
  no check runs (``refusals``).
- it logs in the way the runner's superuser does (libpq's PGHOST and PGPORT,
  over TCP, with a password): every server the runner verifies takes a SCRAM
  password from any address for any role (the image's initdb adds ``host all
  all all scram-sha-256``, which a restored data directory keeps; the
  operator's PG_HBA has the same line). Peer or trust are no option: the
  runner is another pod, and the server's pg_hba is not the runner's to change.
- its password is random, made in this process, and given to psql in its
  environment (never an argument). The server gets only a SCRAM verifier made
  here (``scram_sha256_verifier``), which SCRAM, md5 and password lines all
  accept: CREATE ROLE carries no password a server log could keep, and the
  tenant's ``password_encryption`` does not matter.
- ``VALID UNTIL`` soon after the checks: should the runner die before its
  drop, the password expires by itself (an in-place recovery's verification
  runs in the tenant's own primary, which lives on).

PostgreSQL 13 has no pg_read_all_data: there an ``all-data`` role is not made
and the checks do not run (they fail, saying why) rather than run as the
superuser.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from secrets import token_bytes, token_hex, token_urlsafe
from typing import Literal, Self

from stackforge_operator.backup.failures import redact
from stackforge_operator.backup.postgres import libpq_env, privileged_env

APPLICATION_NAME = "stackforge-drill/check-login"
ROLE_PREFIX = "stackforge_drill_checks_"
# PostgreSQL's own defaults for the verifiers it makes (scram_sha_256_iterations, 16-byte salt).
SCRAM_ITERATIONS = 4096
SALT_BYTES = 16
# What the checks' role reads (module docstring): granted per schema, or pg_read_all_data.
ReadAccess = Literal["schemas", "all-data"]
READ_ACCESS: tuple[ReadAccess, ...] = ("schemas", "all-data")
# How long the login stays valid beyond what its checks may take.
VALIDITY_MARGIN_SECONDS = 600
# Per check, beside its statement timeout: connecting and the answer's way back.
PER_CHECK_SECONDS = 60

_ROLE_RE = re.compile(r"^[a-z0-9_]{1,63}$")
# Letters, digits and base64's and the verifier's punctuation: never a quote or a
# backslash, so psql's \set takes it as it is.
_B64 = "[A-Za-z0-9+/=]+"
_VERIFIER_RE = re.compile(rf"^SCRAM-SHA-256\$[0-9]+:{_B64}\${_B64}:{_B64}$")

# The role (``:membership`` is empty or `` IN ROLE pg_read_all_data``); CONNECT
# to every database (a tenant may have revoked it from PUBLIC; the checks
# reach what the superuser reached), which the drop revokes again (DROP
# OWNED). The session keeps CREATE ROLE out of the server's log whatever the
# tenant set (as the upkeep does with passwords): the verifier is no password,
# but a log is no place for it either.
CREATE_SCRIPT = """\
SET log_statement = 'none';
SET log_min_duration_statement = -1;
SET log_min_error_statement = 'panic';
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION '
              'INHERIT BYPASSRLS%s PASSWORD %L VALID UNTIL %L', :'role', :'membership',
              :'verifier', now() + make_interval(secs => :seconds)) \\gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', datname, :'role')
  FROM pg_database WHERE datallowconn \\gexec
"""
_MEMBERSHIP: dict[ReadAccess, str] = {"schemas": "", "all-data": " IN ROLE pg_read_all_data"}

# ``schemas``: what the checks read, in the database this runs in: every table
# and sequence of the schemas that are not the system's (pg_catalog, pg_toast,
# the temporary ones, information_schema). DROP OWNED revokes it again.
GRANT_READ_SCRIPT = """\
SELECT format('GRANT USAGE ON SCHEMA %I TO %I', nspname, :'role'),
       format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I', nspname, :'role'),
       format('GRANT SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I', nspname, :'role')
  FROM pg_namespace
 WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg\\_%' \\gexec
"""

# What the role may do that would let a check read the server's files or
# environment, or more: one line each. Roles are the cluster's, functions'
# grants each database's own. A SECURITY DEFINER function runs as its owner:
# one a superuser (or a file role) owns lends that power to whoever may call
# it, and PUBLIC may call a function unless it was revoked (the first three).
REFUSALS_QUERY = """\
SELECT 'is ' || v.attribute
  FROM pg_roles AS r, LATERAL (VALUES ('SUPERUSER', r.rolsuper),
    ('CREATEROLE', r.rolcreaterole), ('CREATEDB', r.rolcreatedb),
    ('REPLICATION', r.rolreplication)) AS v(attribute, held)
  WHERE r.rolname = :'role' AND v.held
UNION ALL
SELECT 'is a member of ' || g
  FROM unnest(ARRAY['pg_read_server_files', 'pg_write_server_files',
                    'pg_execute_server_program']) AS g
  WHERE pg_has_role(:'role', g, 'MEMBER')
UNION ALL
SELECT 'may execute ' || f
  FROM unnest(ARRAY['pg_read_file(text)', 'pg_read_binary_file(text)', 'lo_import(text)',
                    'lo_import(text, oid)', 'lo_export(oid, text)']) AS f
  WHERE has_function_privilege(:'role', to_regprocedure(f), 'EXECUTE')
UNION ALL
(SELECT 'may execute ' || p.oid::regprocedure || ', which runs as ' || o.rolname
   FROM pg_proc AS p JOIN pg_roles AS o ON o.oid = p.proowner
  WHERE p.prosecdef AND (o.rolsuper OR pg_has_role(o.oid, 'pg_read_server_files', 'MEMBER')
                         OR pg_has_role(o.oid, 'pg_execute_server_program', 'MEMBER'))
    AND has_function_privilege(:'role', p.oid, 'EXECUTE')
  ORDER BY p.oid LIMIT 3);
"""
# ``schemas``: the roles' password hashes too (an ``all-data`` role reads them by design).
HASHES_REFUSAL_QUERY = """\
SELECT 'may read ' || c
  FROM unnest(ARRAY['pg_authid', 'pg_shadow', 'pg_user_mapping']) AS c
  WHERE to_regclass(c) IS NOT NULL AND has_table_privilege(:'role', c, 'SELECT');
"""

# Logins refused first, whatever follows; then its sessions ended (a check
# that set its statement timeout aside still runs after psql was killed, and
# its locks would hold DROP OWNED); what the role owns (a check that turned
# its session read-write) and its grants (CONNECT) go with DROP OWNED.
DROP_OWNED_SCRIPT = """\
SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') AS made \\gset
\\if :made
ALTER ROLE :"role" NOLOGIN;
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
 WHERE usename = :'role' AND pid <> pg_backend_pid();
DROP OWNED BY :"role";
\\endif
"""
DROP_ROLE_SCRIPT = 'DROP ROLE IF EXISTS :"role";\n'


def scram_sha256_verifier(password: str, salt: bytes,
                          iterations: int = SCRAM_ITERATIONS) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password (RFC 5802, RFC 7677).

    ``password`` must be printable ASCII, which SASLprep (applied by the server
    and by libpq) leaves as it is."""
    if not password or not all(" " <= c <= "~" for c in password):
        raise ValueError("the password must be printable ASCII")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def valid_seconds(checks: int, query_timeout_seconds: float) -> int:
    """How long the login's password stays valid: its checks, one after the other, and a margin."""
    per_check = query_timeout_seconds + PER_CHECK_SECONDS
    return int(checks * per_check) + VALIDITY_MARGIN_SECONDS


@dataclass(frozen=True)
class CheckLogin:
    """A role name and its password, for one run's checks."""

    role: str
    password: str = field(repr=False)

    @classmethod
    def new(cls) -> Self:
        # A name no restored database has (a tenant's role of the prefix is not
        # taken over: CREATE ROLE fails on it) and no other run uses.
        return cls(ROLE_PREFIX + token_hex(6), token_urlsafe(32))

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """libpq's environment to log in as this role where ``base`` logs in."""
        env = dict(base)
        # libpq's default database is the user's name: the one ``base`` meant.
        env.setdefault("PGDATABASE", base.get("PGUSER") or getpass.getuser())
        env["PGUSER"] = self.role
        env["PGPASSWORD"] = self.password
        # A service file's settings would come before PGUSER and PGPASSWORD.
        env.pop("PGSERVICE", None)
        return env


class LoginFailed(Exception):  # noqa: N818 - carries psql's message to the checks' results
    pass


def _variables(**values: str | int) -> str:
    # psql's \set keeps a single-quoted value as it is when it holds no quote
    # or backslash; the callers' values are checked to hold neither.
    for value in values.values():
        if isinstance(value, str) and ("'" in value or "\\" in value):
            raise ValueError("a psql variable with a quote or a backslash")
    return "".join(f"\\set {name} '{value}'\n" for name, value in values.items())


def _psql(psql: str, env: Mapping[str, str], script: str, database: str | None,
          secrets: Sequence[str]) -> str:
    """``script`` as the superuser ``env`` names, in ``database`` (None: env's); its output."""
    run_env = privileged_env(libpq_env(env, APPLICATION_NAME))
    if database:
        run_env["PGDATABASE"] = database
    result = subprocess.run(
        [psql, "--no-psqlrc", "--quiet", "--no-password", "--set=ON_ERROR_STOP=1",
         "--no-align", "--tuples-only", "--file=-"],
        input=script, capture_output=True, text=True, env=run_env, check=False)
    if result.returncode != 0:
        stderr = result.stderr.strip() or f"psql exited {result.returncode}"
        raise LoginFailed(redact(stderr, secrets))
    return result.stdout


def create(psql: str, env: Mapping[str, str], login: CheckLogin, *, seconds: int,
           access: ReadAccess = "schemas", secrets: Sequence[str] = ()) -> None:
    """Make ``login``'s role, valid for ``seconds``, as the superuser ``env`` names;
    LoginFailed if it could not be made."""
    if not _ROLE_RE.match(login.role):
        raise ValueError(f"role name {login.role!r}")
    verifier = scram_sha256_verifier(login.password, token_bytes(SALT_BYTES))
    if not _VERIFIER_RE.match(verifier):
        raise ValueError("unexpected verifier shape")
    _psql(psql, env, _variables(role=login.role, verifier=verifier, seconds=seconds,
                                membership=_MEMBERSHIP[access])
          + CREATE_SCRIPT, None, secrets)


def refusals(psql: str, env: Mapping[str, str], login: CheckLogin, database: str | None,
             access: ReadAccess = "schemas", secrets: Sequence[str] = ()) -> list[str]:
    """With ``schemas`` access, grant ``login``'s role what the checks read in
    ``database`` (None: env's) first; then what it may do there that a check must
    not. LoginFailed if the superuser cannot ask there (no such database)."""
    script = (GRANT_READ_SCRIPT + REFUSALS_QUERY + HASHES_REFUSAL_QUERY
              if access == "schemas" else REFUSALS_QUERY)
    out = _psql(psql, env, _variables(role=login.role) + script, database, secrets)
    return [line for line in out.splitlines() if line.strip()]


def drop(psql: str, env: Mapping[str, str], login: CheckLogin, *,
         databases: Sequence[str | None], secrets: Sequence[str] = ()) -> list[str]:
    """Drop what ``login``'s role owns in each of ``databases`` (None: env's), then the
    role itself; the errors (none: it is gone)."""
    errors = []
    variables = _variables(role=login.role)
    for index, database in enumerate(databases):
        last = index == len(databases) - 1
        script = variables + DROP_OWNED_SCRIPT + (DROP_ROLE_SCRIPT if last else "")
        try:
            _psql(psql, env, script, database, secrets)
        except LoginFailed as exc:
            where = f" in database {database}" if database else ""
            errors.append(f"dropping the checks' role {login.role}{where}: {exc}")
    return errors
