"""Which BackupPolicy's continuous archiving a tenant's primary follows.

A database has one archive: of the tenant's policies that ask for it, the
oldest (by creation, then name) wins, and the others are refused with the
winner's name (reconcile/backup.py). A policy refused for another's place in
the bucket (reconcile/backup_location.py) runs nothing, so archives nothing.
Both the tenant's reconcile (which configures the primary) and each policy's
(which reports) ask this one function, so they cannot disagree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from stackforge_operator.models.backup import BackupPolicySpec
from stackforge_operator.models.effective import Archiving
from stackforge_operator.reconcile import backup_location, storage


def _archiving_spec(policy: Mapping[str, Any]) -> BackupPolicySpec | None:
    meta = policy.get("metadata") or {}
    spec = policy.get("spec") or {}
    if meta.get("deletionTimestamp") or not spec.get("continuousArchiving"):
        return None
    try:
        return BackupPolicySpec.model_validate(spec)
    except ValidationError:
        return None  # its own reconcile says what is wrong with it


def chosen(policies: Sequence[Mapping[str, Any]]) -> tuple[str, BackupPolicySpec] | None:
    """(name, spec) of the archiving policy among one tenant's policies, or None."""
    candidates = [(p, spec) for p in policies if (spec := _archiving_spec(p)) is not None
                  and backup_location.conflict(policies, str(p["metadata"]["name"]),
                                               spec.tenant_ref.name, spec.storage) is None
                  # Without keys, only where the operator lends the pods' own
                  # identity (its reconcile says CredentialsRequired otherwise).
                  and not storage.identity_problems(spec.storage)]
    if not candidates:
        return None
    policy, spec = min(candidates, key=lambda c: (
        str(c[0]["metadata"].get("creationTimestamp") or ""), str(c[0]["metadata"]["name"])))
    return str(policy["metadata"]["name"]), spec


def archiving(policies: Sequence[Mapping[str, Any]]) -> Archiving | None:
    """The primary's archiving settings, from the chosen policy."""
    found = chosen(policies)
    if found is None:
        return None
    name, spec = found
    settings = spec.continuous_archiving
    assert settings is not None  # chosen() keeps archiving policies only
    return Archiving(policy=name, storage=spec.storage,
                     archive_timeout_seconds=settings.archive_timeout_seconds,
                     cipher=settings.repository_cipher_secret_ref)


def fingerprint(spec: BackupPolicySpec) -> str:
    """Where the policy's archive is and how it is read: endpoint, bucket, prefix,
    region, the keys' Secret and the repository cipher's. A restore records it at
    its start: the same repository path in another place is another archive. Only
    these, spelled out: a field that does not move the archive (encryption of new
    objects, the endpoint's CA), or one a later release adds, must not count."""
    storage = spec.storage
    keys = storage.credentials_secret_ref
    cipher = spec.continuous_archiving.repository_cipher_secret_ref \
        if spec.continuous_archiving is not None else None
    where = [str(storage.endpoint or ""), storage.bucket, storage.prefix or "",
             storage.region or "", keys.name if keys else "",
             f"{cipher.name}/{cipher.key}" if cipher else ""]
    return hashlib.sha256("\n".join(where).encode()).hexdigest()[:32]
