"""Generated credentials Secrets: made once, kept forever, rotated on request.

A reconcile passes in the values that already exist, so a restart or a resync
never regenerates a password. Rotation (the runbook's "Rotate all
credentials" after a security incident) is requested by setting the tenant
annotation ``stackforge.io/rotate-credentials`` to a new value; the Secret
records the request it last honoured, so each request rotates exactly once.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Mapping

from stackforge_operator import API_GROUP
from stackforge_operator.builders import secrets_names as names
from stackforge_operator.builders.common import Manifest, metadata
from stackforge_operator.models.effective import EffectiveTenant
from stackforge_operator.models.tenant import admin_secret_name

ROTATE_ANNOTATION = f"{API_GROUP}/rotate-credentials"
ROTATION_HANDLED_ANNOTATION = f"{API_GROUP}/rotation"

Generator = Callable[[], str]
# What the live Secrets hold: secret name -> key -> decoded value, plus the
# rotation request each one last honoured.
Existing = Mapping[str, Mapping[str, str]]


def random_password() -> str:
    return secrets.token_urlsafe(24)


def gossip_key() -> str:
    # Consul wants a base64-encoded 32-byte key.
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _fixed(value: str) -> Generator:
    return lambda: value


def wanted_keys(t: EffectiveTenant) -> dict[str, dict[str, Generator]]:
    """Secret name -> key -> how to generate it, for the components in use."""
    wanted: dict[str, dict[str, Generator]] = {}
    if t.postgres.enabled:
        wanted[names.POSTGRES_SECRET] = {
            names.POSTGRES_USER_KEY: lambda: names.POSTGRES_APP_USER,
            names.POSTGRES_PASSWORD_KEY: random_password,
            names.POSTGRES_SUPERUSER_PASSWORD_KEY: random_password,
            names.POSTGRES_REPLICATION_PASSWORD_KEY: random_password,
        }
    if t.redis.enabled:
        wanted[names.REDIS_SECRET] = {names.REDIS_PASSWORD_KEY: random_password}
    if t.consul.enabled:
        wanted[names.CONSUL_SECRET] = {names.CONSUL_GOSSIP_KEY: gossip_key}
    # One Secret per account; accounts whose password the customer supplies get none.
    for account in t.admin_accounts:
        if account.password_secret_ref is None:
            wanted[admin_secret_name(account.username)] = {
                names.ADMIN_USERNAME_KEY: _fixed(account.username),
                names.ADMIN_PASSWORD_KEY: random_password,
            }
    return wanted


def build(
    t: EffectiveTenant,
    existing: Existing,
    existing_rotation: Mapping[str, str],
    rotation_request: str | None,
) -> list[Manifest]:
    """The Secrets, keeping every existing value unless a new rotation is requested.

    ``existing_rotation`` maps a Secret name to the rotation request it last
    honoured; ``rotation_request`` is the tenant's current annotation value.
    """
    manifests = []
    for name, keys in wanted_keys(t).items():
        have = existing.get(name, {})
        rotate = bool(rotation_request) and existing_rotation.get(name) != rotation_request
        data = {}
        for key, generate in keys.items():
            # A rotation changes passwords, never user names (the same key in
            # every Secret that has one).
            keep = key in have and not (rotate and key != names.POSTGRES_USER_KEY)
            data[key] = have[key] if keep else generate()
        meta = metadata(t, name, "credentials")
        # The request honoured stays recorded once the tenant's annotation is
        # gone: set to the same value again, it must not rotate a second time.
        honoured = rotation_request or existing_rotation.get(name)
        if honoured:
            meta["annotations"] = {ROTATION_HANDLED_ANNOTATION: honoured}
        manifests.append({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": meta,
            "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode("ascii") for k, v in data.items()},
        })
    return manifests


def template_rotation(rotation_request: str | None,
                      existing_rotation: Mapping[str, str]) -> str | None:
    """What the workloads' pod templates carry (builders/stack.py): the request, or
    once it is gone from the tenant the one last honoured, so that removing the
    annotation restarts nothing (a changed template replaces every pod)."""
    if rotation_request:
        return rotation_request
    return next((value for _, value in sorted(existing_rotation.items()) if value), None)


def decode(secret: Mapping[str, object]) -> dict[str, str]:
    """A live Secret's data, decoded: its text values. A key that holds no UTF-8
    text (a keystore beside a CA, in a Secret a person or cert-manager made) is
    left out, as if missing: every value read from here is text, and one such
    key raised in every reconcile that read the Secret for another."""
    data = secret.get("data") or {}
    assert isinstance(data, Mapping)
    found = {}
    for key, value in data.items():
        try:
            found[str(key)] = base64.b64decode(str(value)).decode()
        except (ValueError, UnicodeDecodeError):
            continue
    return found
