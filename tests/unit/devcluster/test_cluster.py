"""The local control plane's audit policy: only the operator namespace's writes and reads
are logged."""

from __future__ import annotations

from pathlib import Path

from stackforge_operator.devcluster.cluster import audit_policy_document, run_kubectl


def test_audit_policy_logs_only_writes_and_reads_by_the_operator_namespace() -> None:
    rules = audit_policy_document()["rules"]
    assert rules == [
        # Its writes of its own resources with what they wrote (a test that finds
        # one it did not expect says what it was).
        {"level": "Request", "userGroups": ["system:serviceaccounts:stackforge-system"],
         "verbs": ["create", "update", "patch", "delete", "deletecollection"],
         "resources": [{"group": "stackforge.io"}]},
        {"level": "Metadata", "userGroups": ["system:serviceaccounts:stackforge-system"],
         "verbs": ["create", "update", "patch", "delete", "deletecollection", "get", "list"]},
        # Everything else (watches, controllers, kwok's heartbeats): not logged.
        {"level": "None"},
    ]


def test_kubectl_keeps_its_discovery_cache_in_the_runs_directory(tmp_path: Path) -> None:
    # The default, ~/.kube/cache, gains a directory per host:port, and every
    # local cluster has a new port: it grew without end.
    binary = tmp_path / "controlplane"
    binary.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    binary.chmod(0o755)
    kubeconfig = tmp_path / "run" / "admin.kubeconfig"
    ran = run_kubectl(binary, kubeconfig, ["get", "pods"])
    cache = tmp_path / "run" / "kubectl-cache"
    assert ran.stdout.splitlines() == [
        "kubectl", f"--kubeconfig={kubeconfig}", f"--cache-dir={cache}", "get", "pods"]
