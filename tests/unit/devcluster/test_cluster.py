"""The local control plane's audit policy: only the operator namespace's writes are logged."""

from __future__ import annotations

from stackforge_operator.devcluster.cluster import audit_policy_document


def test_audit_policy_logs_only_writes_by_the_operator_namespace() -> None:
    rules = audit_policy_document()["rules"]
    assert rules == [
        {"level": "Metadata", "userGroups": ["system:serviceaccounts:stackforge-system"],
         "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
        # Everything else (reads, controllers, kwok's heartbeats): not logged.
        {"level": "None"},
    ]
