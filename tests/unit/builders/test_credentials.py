from __future__ import annotations

import base64
import json

import pytest
from pydantic import ValidationError

from stackforge_operator.builders import credentials, postgres
from stackforge_operator.builders import secrets_names as sn
from stackforge_operator.models.tenant import StackForgeTenantSpec
from tests.unit.builders.tenants import container, find, tenant

ADMINS = {"adminAccounts": [
    {"username": "jane_doe", "email": "jane@example.com", "role": "Admin"},
    {"username": "viewer.one", "email": "v@example.com", "role": "Viewer"},
    {"username": "own", "email": "o@example.com", "role": "Operator",
     "passwordSecretRef": {"name": "customer-secret", "key": "pw"}},
]}


def decoded(secret: dict[str, object]) -> dict[str, str]:
    return credentials.decode(secret)


def test_each_generated_admin_account_has_a_secret_of_its_own() -> None:
    built = credentials.build(tenant(ADMINS), existing={}, existing_rotation={},
                              rotation_request=None)
    by_name = {s["metadata"]["name"]: s for s in built}
    assert decoded(by_name["admin-jane-doe"])[sn.ADMIN_USERNAME_KEY] == "jane_doe"
    assert len(decoded(by_name["admin-jane-doe"])[sn.ADMIN_PASSWORD_KEY]) >= 24
    assert decoded(by_name["admin-viewer.one"])[sn.ADMIN_USERNAME_KEY] == "viewer.one"
    # The customer supplies that one's password: nothing generated.
    assert not any(n.startswith("admin-own") for n in by_name)


def test_a_rotation_changes_admin_passwords_not_their_names() -> None:
    t = tenant(ADMINS)
    first = credentials.build(t, existing={}, existing_rotation={}, rotation_request=None)
    existing = {s["metadata"]["name"]: decoded(s) for s in first}
    kept = credentials.build(t, existing=existing, existing_rotation={}, rotation_request=None)
    assert [decoded(s) for s in kept] == [decoded(s) for s in first]
    rotated = {s["metadata"]["name"]: decoded(s) for s in credentials.build(
        t, existing=existing, existing_rotation={}, rotation_request="r1")}
    assert rotated["admin-jane-doe"][sn.ADMIN_USERNAME_KEY] == "jane_doe"
    assert rotated["admin-jane-doe"][sn.ADMIN_PASSWORD_KEY] != existing["admin-jane-doe"][
        sn.ADMIN_PASSWORD_KEY]


def test_a_rotation_stays_recorded_and_in_the_templates_once_its_annotation_is_gone(
        ) -> None:
    """Each child carries a digest of what was applied (reconcile/diff.py), so
    whatever the build leaves out is removed: the Secrets' record of the request
    honoured (the same value set again would rotate twice) and the pod templates'
    rotation annotation (every pod of the stack replaced) must stay."""
    t = tenant(ADMINS)
    first = credentials.build(t, existing={}, existing_rotation={}, rotation_request="r1")
    existing = {s["metadata"]["name"]: decoded(s) for s in first}
    honoured = {s["metadata"]["name"]: "r1" for s in first}
    later = credentials.build(t, existing=existing, existing_rotation=honoured,
                              rotation_request=None)
    assert [s["metadata"]["annotations"] for s in later] == [
        {credentials.ROTATION_HANDLED_ANNOTATION: "r1"}] * len(later)
    assert [decoded(s) for s in later] == [decoded(s) for s in first]
    again = credentials.build(t, existing=existing, existing_rotation=honoured,
                              rotation_request="r1")
    assert [decoded(s) for s in again] == [decoded(s) for s in first]  # not twice
    assert credentials.template_rotation(None, honoured) == "r1"
    assert credentials.template_rotation("r2", honoured) == "r2"
    assert credentials.template_rotation(None, {"a": "", "b": ""}) is None


def test_the_primary_reads_every_account_with_its_role_and_password() -> None:
    t = tenant(ADMINS)
    secret = postgres.admin_roles_secret(t, {"jane_doe": "j-pw", "own": "o-pw"})
    assert secret["metadata"]["name"] == sn.POSTGRES_ADMIN_ROLES_SECRET
    accounts = json.loads(base64.b64decode(secret["data"][sn.POSTGRES_ADMIN_ROLES_KEY]))
    # viewer.one has no password yet (its Secret is not there): left out until it is.
    assert accounts == [{"name": "jane_doe", "role": "Admin", "password": "j-pw"},
                        {"name": "own", "role": "Operator", "password": "o-pw"}]
    # Mounted from a Secret volume into the upkeep sidecar only: no restart when
    # the accounts change, and the passwords never sit in the server's container.
    sts = find(postgres.build(t), "StatefulSet", "postgres")
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["admin-roles"]["secret"]["secretName"] == sn.POSTGRES_ADMIN_ROLES_SECRET
    upkeep = container(sts, "upkeep")
    [mounted] = [m for m in upkeep["volumeMounts"] if m["name"] == "admin-roles"]
    path = next(e["value"] for e in upkeep["env"] if e["name"] == "ADMIN_ACCOUNTS_FILE")
    assert path == f"{mounted['mountPath']}/{sn.POSTGRES_ADMIN_ROLES_KEY}"
    assert all(m["name"] != "admin-roles" for m in container(sts, "postgres")["volumeMounts"])
    assert postgres.build(tenant()) == postgres.build(t)  # accounts never touch the pods


# The stack's own role names, from where the stack takes them, and the prefixes of
# PostgreSQL's predefined roles and of the upkeep sidecar's group role.
@pytest.mark.parametrize("username", [postgres.SUPERUSER, postgres.REPLICATION_USER,
                                      sn.POSTGRES_APP_USER, "pg_monitor",
                                      "stackforge_admin_accounts"])
def test_the_stacks_own_roles_are_no_admin_accounts(username: str) -> None:
    with pytest.raises(ValidationError, match="belong to the stack"):
        StackForgeTenantSpec.model_validate({"adminAccounts": [
            {"username": username, "email": "x@example.com"}]})


@pytest.mark.parametrize("username", ["jane.", "a..b", "a.-b", "Jane", "_a", "a-"])
def test_usernames_must_name_a_secret(username: str) -> None:
    with pytest.raises(ValidationError):
        StackForgeTenantSpec.model_validate({"adminAccounts": [
            {"username": username, "email": "x@example.com"}]})


def test_two_accounts_cannot_share_a_secret() -> None:
    with pytest.raises(ValidationError, match="would share the Secret admin-a-b"):
        StackForgeTenantSpec.model_validate({"adminAccounts": [
            {"username": "a_b", "email": "x@example.com"},
            {"username": "a-b", "email": "y@example.com"}]})


def test_a_secret_is_decoded_to_its_text_values_and_a_binary_key_left_out() -> None:
    """A keystore beside the CA a notification channel names raised in every
    reconcile that read the Secret, and stopped the tenant's status writes."""
    secret = {"data": {
        "ca.crt": base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode(),
        "keystore.p12": base64.b64encode(b"\x30\x82\x0a\xff\xfe").decode()}}
    assert credentials.decode(secret) == {"ca.crt": "-----BEGIN CERTIFICATE-----\n"}
