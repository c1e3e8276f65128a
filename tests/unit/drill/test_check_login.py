"""The SQL checks' login: its SCRAM verifier, its environment, and what reaches psql.

(Against a real server: tests/drill/test_runner.py, the checks' login tests.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from pathlib import Path

import pytest

from stackforge_operator.drill import check_login
from stackforge_operator.drill.check_login import CheckLogin, scram_sha256_verifier
from tests.unit.drill.standin_psql import StandInPsql

# RFC 7677, section 3: user "user", password "pencil".
RFC_SALT = "W22ZaJ0SNY7soEsUEjb6gQ=="
RFC_AUTH_MESSAGE = (
    b"n=user,r=rOprNGfwEbeRWgbNEkqO,"
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
)
RFC_CLIENT_PROOF = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
RFC_SERVER_SIGNATURE = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def _keys(verifier: str) -> tuple[int, bytes, bytes, bytes]:
    matched = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", verifier)
    assert matched, verifier
    iterations, salt, stored, server = matched.groups()
    return (int(iterations), base64.b64decode(salt), base64.b64decode(stored),
            base64.b64decode(server))


def test_the_verifier_is_the_one_rfc_7677s_exchange_authenticates_against() -> None:
    verifier = scram_sha256_verifier("pencil", base64.b64decode(RFC_SALT), 4096)
    iterations, salt, stored_key, server_key = _keys(verifier)
    assert (iterations, base64.b64encode(salt).decode()) == (4096, RFC_SALT)
    # The server proves itself with ServerKey...
    signature = hmac.digest(server_key, RFC_AUTH_MESSAGE, "sha256")
    assert base64.b64encode(signature).decode() == RFC_SERVER_SIGNATURE
    # ...and takes the client's proof: ClientKey = proof XOR HMAC(StoredKey, ...).
    client_signature = hmac.digest(stored_key, RFC_AUTH_MESSAGE, "sha256")
    proof = base64.b64decode(RFC_CLIENT_PROOF)
    client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key


@pytest.mark.parametrize("password", ["", "pässword", "tab\there"])
def test_a_password_saslprep_might_change_is_refused(password: str) -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        scram_sha256_verifier(password, b"salt")


def test_each_login_is_new_and_its_password_never_shown() -> None:
    first, second = CheckLogin.new(), CheckLogin.new()
    assert first.role != second.role and first.password != second.password
    assert re.fullmatch(r"stackforge_drill_checks_[0-9a-f]{12}", first.role)
    assert len(first.password) >= 32
    assert first.password not in repr(first)


def test_the_logins_environment_is_the_superusers_address_with_its_own_user() -> None:
    login = CheckLogin("stackforge_drill_checks_1", "pw-of-the-checks")
    base = {"PGHOST": "scratch.svc", "PGPORT": "5432", "PGUSER": "postgres",
            "PGPASSWORD": "superuser-pw", "PGDATABASE": "restore", "PGSERVICE": "other"}
    env = login.env(base)
    assert env == {"PGHOST": "scratch.svc", "PGPORT": "5432",
                   "PGUSER": "stackforge_drill_checks_1", "PGPASSWORD": "pw-of-the-checks",
                   "PGDATABASE": "restore"}
    assert base["PGUSER"] == "postgres"  # not changed in place
    # libpq's default database is its user's: the superuser's, not the role's.
    assert login.env({"PGUSER": "postgres"})["PGDATABASE"] == "postgres"


def test_the_password_stays_valid_for_the_checks_and_a_margin() -> None:
    assert check_login.valid_seconds(0, 300) == check_login.VALIDITY_MARGIN_SECONDS
    assert check_login.valid_seconds(3, 300) == 3 * 360 + check_login.VALIDITY_MARGIN_SECONDS


SUPERUSER_ENV = {"PGHOST": "127.0.0.1", "PGUSER": "postgres", "PGPASSWORD": "superuser-pw",
                 "PGDATABASE": "restore"}


def test_the_role_is_made_with_a_verifier_on_stdin_and_no_password_anywhere(
        tmp_path: Path) -> None:
    psql = StandInPsql(tmp_path)
    login = CheckLogin.new()
    check_login.create(str(psql.path), SUPERUSER_ENV, login, seconds=900)
    [call] = psql.calls()
    assert (call.database, call.user) == ("restore", "postgres")
    assert login.password not in " ".join(call.argv) + call.stdin
    assert login.role not in " ".join(call.argv)
    verifier = re.search(r"\\set verifier '([^']+)'", call.stdin)
    assert verifier is not None
    iterations, salt, _, _ = _keys(verifier[1])
    assert verifier[1] == scram_sha256_verifier(login.password, salt, iterations)
    assert f"\\set role '{login.role}'" in call.stdin and "\\set seconds '900'" in call.stdin
    # Nothing of the statement in the server's log, whatever the tenant set.
    assert call.stdin.index("SET log_statement = 'none'") < call.stdin.index("CREATE ROLE")
    # By default a member of no role: pg_read_all_data would read pg_authid's hashes.
    assert "\\set membership ''" in call.stdin and "NOSUPERUSER" in call.stdin


def test_an_all_data_role_is_a_member_of_pg_read_all_data(tmp_path: Path) -> None:
    psql = StandInPsql(tmp_path)
    check_login.create(str(psql.path), SUPERUSER_ENV, CheckLogin.new(), seconds=60,
                       access="all-data")
    [call] = psql.calls()
    assert "\\set membership ' IN ROLE pg_read_all_data'" in call.stdin


def test_a_schemas_role_is_granted_the_schemas_before_it_is_asked_what_it_may_read(
        tmp_path: Path) -> None:
    psql = StandInPsql(tmp_path)
    login = CheckLogin.new()
    check_login.refusals(str(psql.path), SUPERUSER_ENV, login, "app")
    check_login.refusals(str(psql.path), SUPERUSER_ENV, login, "app", access="all-data")
    schemas, all_data = psql.calls()
    assert schemas.stdin.index("GRANT SELECT ON ALL TABLES") < schemas.stdin.index(
        "has_function_privilege")
    assert "pg_authid" in schemas.stdin
    # pg_read_all_data grants on no object: nothing is granted, and it reads pg_authid by design.
    assert "GRANT" not in all_data.stdin and "pg_authid" not in all_data.stdin
    assert "has_function_privilege" in all_data.stdin


def test_what_the_role_may_do_is_asked_in_the_checks_database(tmp_path: Path) -> None:
    psql = StandInPsql(tmp_path)
    env = {**SUPERUSER_ENV, "ANSWER": "is a member of pg_read_server_files\n\n"}
    login = CheckLogin.new()
    assert check_login.refusals(str(psql.path), env, login, "app") == [
        "is a member of pg_read_server_files"]
    assert check_login.refusals(str(psql.path), {**env, "ANSWER": ""}, login, None) == []
    assert [c.database for c in psql.calls()] == ["app", "restore"]


def test_a_failing_psql_is_login_failed_with_its_message_redacted(tmp_path: Path) -> None:
    psql = StandInPsql(tmp_path)
    login = CheckLogin.new()
    with pytest.raises(check_login.LoginFailed, match="psql exited 3"):
        check_login.create(str(psql.path), {**SUPERUSER_ENV, "STATUS": "3"}, login,
                           seconds=60, secrets=["superuser-pw"])
    with pytest.raises(check_login.LoginFailed) as failed:
        check_login.create(str(psql.path), {**SUPERUSER_ENV, "STATUS": "2",
                                            "ERR": "FATAL: superuser-pw\nrefused"},
                           login, seconds=60, secrets=["superuser-pw"])
    assert str(failed.value) == "FATAL: <redacted> refused"


def test_the_drop_refuses_logins_first_and_drops_the_role_in_the_last_database(
        tmp_path: Path) -> None:
    psql = StandInPsql(tmp_path)
    login = CheckLogin.new()
    assert check_login.drop(str(psql.path), SUPERUSER_ENV, login,
                            databases=["app", None]) == []
    calls = psql.calls()
    assert [c.database for c in calls] == ["app", "restore"]
    for call in calls:
        assert call.stdin.index("NOLOGIN") < call.stdin.index("DROP OWNED")
    assert "DROP ROLE" not in calls[0].stdin and "DROP ROLE" in calls[1].stdin
    failing = check_login.drop(str(psql.path), {**SUPERUSER_ENV, "STATUS": "2"}, login,
                               databases=["app", None])
    assert len(failing) == 2 and "in database app" in failing[0]


def test_a_role_name_that_is_not_a_plain_identifier_is_refused() -> None:
    with pytest.raises(ValueError, match="role name"):
        check_login.create("psql", SUPERUSER_ENV, CheckLogin("x'y", "pw"), seconds=1)
