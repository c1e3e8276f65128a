"""reconcile/backup_location.py: one policy per place of a tenant's backups."""

from __future__ import annotations

from typing import Any

import pytest

from stackforge_operator.models.backup import BackupPolicySpec
from stackforge_operator.reconcile import archiving_policy, backup_location

TENANT = "acme"


def _policy(name: str, created: str, *, prefix: str = "stackforge", bucket: str = "backups",
            endpoint: str | None = None, archiving: bool = False,
            deleting: bool = False) -> dict[str, Any]:
    storage: dict[str, Any] = {"bucket": bucket, "prefix": prefix,
                               "credentialsSecretRef": {"name": "s3-keys"}}
    if endpoint:
        storage["endpoint"] = endpoint
    spec: dict[str, Any] = {"tenantRef": {"name": TENANT}, "storage": storage,
                            "retention": {"keepLast": 3}}
    if archiving:
        spec["continuousArchiving"] = {
            "repositoryCipherSecretRef": {"name": "cipher", "key": "passphrase"}}
    meta: dict[str, Any] = {"name": name, "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-06T00:00:00Z"
    return {"metadata": meta, "spec": spec}


def _conflict(policies: list[dict[str, Any]], name: str) -> str | None:
    own = next(p for p in policies if p["metadata"]["name"] == name)
    spec = BackupPolicySpec.model_validate(own["spec"])
    found = backup_location.conflict(policies, name, TENANT, spec.storage)
    return found.owner if found else None


def test_the_older_policy_owns_a_shared_place_and_the_younger_is_refused() -> None:
    policies = [_policy("hourly", "2026-12-02T00:00:00Z"),
                _policy("nightly", "2026-12-01T00:00:00Z")]
    assert _conflict(policies, "nightly") is None
    assert _conflict(policies, "hourly") == "nightly"


def test_policies_created_in_one_second_are_ordered_by_name() -> None:
    policies = [_policy("b", "2026-12-01T00:00:00Z"), _policy("a", "2026-12-01T00:00:00Z")]
    assert (_conflict(policies, "a"), _conflict(policies, "b")) == (None, "a")


def test_other_buckets_prefixes_and_endpoints_are_other_places() -> None:
    policies = [_policy("nightly", "2026-12-01T00:00:00Z"),
                _policy("other-bucket", "2026-12-02T00:00:00Z", bucket="archive"),
                _policy("other-prefix", "2026-12-02T00:00:00Z", prefix="hourly"),
                _policy("other-server", "2026-12-02T00:00:00Z",
                        endpoint="https://s3.elsewhere.example:9000")]
    for name in ("other-bucket", "other-prefix", "other-server"):
        assert _conflict(policies, name) is None, name


def test_a_prefix_inside_the_tenants_folder_of_another_overlaps_it() -> None:
    # "stackforge/acme/x/acme/<run>" is listed under "stackforge/acme/" as run "x"...
    # not a run id today, but the outer policy's retention reads that folder.
    policies = [_policy("nightly", "2026-12-01T00:00:00Z"),
                _policy("nested", "2026-12-02T00:00:00Z", prefix="stackforge/acme/x")]
    assert _conflict(policies, "nested") == "nightly"
    # "stackforge-2" shares characters with "stackforge", not a folder.
    policies = [_policy("nightly", "2026-12-01T00:00:00Z"),
                _policy("sibling", "2026-12-02T00:00:00Z", prefix="stackforge-2")]
    assert _conflict(policies, "sibling") is None


def test_endpoints_are_compared_as_urls_not_as_typed() -> None:
    policies = [_policy("nightly", "2026-12-01T00:00:00Z", endpoint="https://S3.example:9000"),
                _policy("hourly", "2026-12-02T00:00:00Z", endpoint="https://s3.example:9000/")]
    assert _conflict(policies, "hourly") == "nightly"


def test_a_deleting_or_unreadable_older_policy_owns_nothing() -> None:
    broken = _policy("broken", "2026-12-01T00:00:00Z")
    broken["spec"]["storage"] = {}  # no bucket: its own reconcile stalls it
    policies = [_policy("going", "2026-12-01T00:00:00Z", deleting=True), broken,
                _policy("nightly", "2026-12-02T00:00:00Z")]
    assert _conflict(policies, "nightly") is None


def test_a_policy_not_listed_yet_is_the_youngest() -> None:
    policies = [_policy("nightly", "2026-12-01T00:00:00Z")]
    spec = BackupPolicySpec.model_validate(_policy("new", "")["spec"])
    found = backup_location.conflict(policies, "new", TENANT, spec.storage)
    assert found is not None and found.owner == "nightly"
    assert "s3://backups/stackforge/acme/" in found.message(TENANT)


def test_a_policy_refused_its_place_never_archives() -> None:
    """The older policy takes dumps only; the younger, refused, asks for
    archiving: the primary must not archive to a policy that runs nothing."""
    policies = [_policy("nightly", "2026-12-01T00:00:00Z"),
                _policy("wal", "2026-12-02T00:00:00Z", archiving=True,
                        endpoint="https://s3.example:9000")]
    policies[0]["spec"]["storage"]["endpoint"] = "https://s3.example:9000"
    BackupPolicySpec.model_validate(policies[1]["spec"])  # refused for its place alone
    assert archiving_policy.chosen(policies) is None
    policies[1]["spec"]["storage"]["prefix"] = "wal"
    chosen = archiving_policy.chosen(policies)
    assert chosen is not None and chosen[0] == "wal"


def test_a_policy_without_keys_archives_only_where_the_operator_lends_an_identity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without keys the primary's pgBackRest took the pod's ambient identity (the
    node's role, shared by every tenant) against whatever bucket the policy named."""
    policy = _policy("wal", "2026-12-02T00:00:00Z", archiving=True)
    del policy["spec"]["storage"]["credentialsSecretRef"]
    monkeypatch.delenv("STACKFORGE_AMBIENT_S3_IDENTITY", raising=False)
    assert archiving_policy.chosen([policy]) is None
    monkeypatch.setenv("STACKFORGE_AMBIENT_S3_IDENTITY", "allow")
    chosen = archiving_policy.chosen([policy])
    assert chosen is not None and chosen[0] == "wal"
