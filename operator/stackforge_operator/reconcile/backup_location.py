"""Which of a tenant's BackupPolicies owns a place in a bucket.

A policy keeps the tenant's logical backups under ``<prefix>/<tenant>/`` of its
bucket, and its retention deletes every run there beyond what it keeps. Two
policies of one tenant writing to overlapping places would each delete the
other's backups: a policy keeping the last 2 hourly runs empties one keeping
7 nightly ones. Of the policies whose places overlap, the oldest (by creation,
then name, as for archiving: reconcile/archiving_policy.py) owns the place;
each other one is refused with the owner's name and runs nothing.

Places are compared as written: two endpoint URLs naming one server (a
Service's short and full names) are not seen as one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from stackforge_operator.models.backup import BackupPolicySpec, ObjectStorage


@dataclass(frozen=True)
class Place:
    """Where one policy keeps one tenant's logical backups."""

    endpoint: str
    bucket: str
    key_prefix: str

    def overlaps(self, other: Place) -> bool:
        # A prefix inside another's tenant folder (prefix "a/acme/x" beside "a")
        # is listed, and so pruned, by the outer one's retention.
        return (self.endpoint, self.bucket) == (other.endpoint, other.bucket) and (
            self.key_prefix.startswith(other.key_prefix)
            or other.key_prefix.startswith(self.key_prefix))

    def describe(self) -> str:
        where = f" at {self.endpoint}" if self.endpoint else ""
        return f"s3://{self.bucket}/{self.key_prefix}{where}"


def place(storage: ObjectStorage, tenant: str) -> Place:
    endpoint = str(storage.endpoint).rstrip("/").lower() if storage.endpoint else ""
    return Place(endpoint, storage.bucket, f"{storage.prefix}/{tenant}/")


@dataclass(frozen=True)
class Conflict:
    owner: str
    place: Place

    def message(self, tenant: str) -> str:
        return (f"BackupPolicy {self.owner} keeps tenant {tenant}'s backups in "
                f"{self.place.describe()}: with a second policy there, each policy's "
                "retention would delete the other's backups. Give this policy another "
                "bucket or prefix")


def _placed(policy: Mapping[str, Any], tenant: str) -> Place | None:
    meta = policy.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None  # going: it runs nothing more
    try:
        spec = BackupPolicySpec.model_validate(policy.get("spec") or {})
    except ValidationError:
        return None  # its own reconcile says what is wrong with it
    return place(spec.storage, tenant)


def _age(policy: Mapping[str, Any]) -> tuple[str, str]:
    meta = policy["metadata"]
    return str(meta.get("creationTimestamp") or ""), str(meta["name"])


def conflict(policies: Sequence[Mapping[str, Any]], name: str, tenant: str,
             storage: ObjectStorage) -> Conflict | None:
    """The older policy of the tenant whose place overlaps policy ``name``'s
    (kept at ``storage``), or None when ``name`` owns its place."""
    mine = place(storage, tenant)
    own = next((p for p in policies if p["metadata"]["name"] == name), None)
    # A policy not listed yet (just made) is younger than every listed one.
    own_age = _age(own) if own is not None else ("\uffff", name)
    for policy in sorted(policies, key=_age):
        if _age(policy) >= own_age:
            break
        other = _placed(policy, tenant)
        if other is not None and other.overlaps(mine):
            return Conflict(str(policy["metadata"]["name"]), other)
    return None
