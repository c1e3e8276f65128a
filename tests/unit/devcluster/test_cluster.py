"""The local control plane's audit policy: only the operator namespace's writes and reads
are logged."""

from __future__ import annotations

from stackforge_operator.devcluster.cluster import audit_policy_document


def test_audit_policy_logs_only_writes_and_reads_by_the_operator_namespace() -> None:
    rules = audit_policy_document()["rules"]
    assert rules == [
        {"level": "Metadata", "userGroups": ["system:serviceaccounts:stackforge-system"],
         "verbs": ["create", "update", "patch", "delete", "deletecollection", "get", "list"]},
        # Everything else (watches, controllers, kwok's heartbeats): not logged.
        {"level": "None"},
    ]
