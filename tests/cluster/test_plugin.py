"""`kubectl stackforge` against the test cluster, as users run it: the installed
`kubectl-stackforge` with the admin kubeconfig, and through kubectl's own plugin
lookup. On kwok: status, isolation, backup's refusals and the support bundle need
objects, not running pods (psql and a report with logs: tests/realnode/test_plugin.py)."""

from __future__ import annotations

import base64
import functools
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from stackforge_operator import config
from stackforge_operator import support_bundle as bundle
from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.support import plugin_user, tenants
from tests.support.clusters import ClusterHandle
from tests.support.objects import name_of
from tests.support.plugin_cli import PLUGIN, plugin


@pytest.fixture
def tenant(cluster: ClusterHandle, operator: OperatorProcess) -> Iterator[tuple[str, str]]:
    name = f"cli-{uuid.uuid4().hex[:5]}"
    tenants.apply(cluster, tenants.small_tenant(name))
    try:
        tenants.wait_condition(cluster, name, "Ready", "True")
        yield name, tenants.namespace_of(name)
    finally:
        tenants.discard(cluster, name)


def test_status_of_one_tenant_of_all_and_of_none(cluster: ClusterHandle,
                                                 tenant: tuple[str, str]) -> None:
    name, ns = tenant
    shown = plugin(cluster, "status", name)
    assert shown.returncode == 0, shown.stderr
    assert f"Tenant {name} (namespace {ns}): Ready=True" in shown.stdout
    assert "Components (" in shown.stdout and "Cost: " in shown.stdout
    assert "\033[" not in shown.stdout  # not a terminal: no colour
    as_json = plugin(cluster, "-n", ns, "status", name, "-o", "json")
    assert json.loads(as_json.stdout)["metadata"]["name"] == name
    assert yaml.safe_load(plugin(cluster, "status", name, "-o", "yaml").stdout)[
        "kind"] == "StackForgeTenant"
    every = plugin(cluster, "status")
    assert every.returncode == 0 and any(line.split()[:2] == [ns, name]
                                         for line in every.stdout.splitlines())
    assert "tenants," in every.stdout.splitlines()[-1]
    missing = plugin(cluster, "status", "no-such-tenant")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: no StackForgeTenant no-such-tenant in any namespace"
    elsewhere = plugin(cluster, "-n", "default", "status", name)
    assert elsewhere.returncode == 1 and "in namespace default" in elsewhere.stderr


def test_isolate_and_unisolate_and_a_backup_without_a_policy(
        cluster: ClusterHandle, tenant: tuple[str, str]) -> None:
    name, _ = tenant
    ran = plugin(cluster, "isolate", name)
    assert ran.returncode == 0, ran.stderr
    isolated = tenants.wait_condition(cluster, name, "Isolated", "True")
    began = datetime.fromisoformat(
        tenants.condition(isolated, "Isolated")["lastTransitionTime"])  # type: ignore[index]
    assert plugin(cluster, "unisolate", name).returncode == 0
    lifted = tenants.wait_condition(cluster, name, "Isolated", "False")
    # Lifted seconds after it began: reported only once the primary can no
    # longer take a session begun since for one of the isolation's.
    ended = datetime.fromisoformat(
        tenants.condition(lifted, "Isolated")["lastTransitionTime"])  # type: ignore[index]
    assert (ended - began).total_seconds() >= config.ISOLATION_SETTLE_SECONDS, (began, ended)
    refused = plugin(cluster, "backup", name)
    assert refused.returncode == 1
    assert "has 0 BackupPolicies (none): name one with --policy" in refused.stderr


def test_kubectl_finds_the_plugin_on_its_path(cluster: ClusterHandle,
                                             tenant: tuple[str, str]) -> None:
    name, _ = tenant
    # kubectl refuses flags before a plugin's name: the kubeconfig travels as $KUBECONFIG.
    env = {**os.environ, "PATH": f"{PLUGIN.parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "KUBECONFIG": str(cluster.kubeconfig)}
    ran = subprocess.run([*cluster.kubectl_argv, "stackforge", "status", name, "-o", "json"],
                         capture_output=True, text=True, timeout=120, check=False, env=env)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["metadata"]["name"] == name


def test_the_report_bundles_the_tenants_objects_with_no_secret_value(
        cluster: ClusterHandle, tenant: tuple[str, str], tmp_path: Path) -> None:
    name, ns = tenant
    out = tmp_path / "report.tar.gz"
    ran = plugin(cluster, "report", name, "-f", str(out))
    assert ran.returncode == 0, ran.stderr
    files = bundle.verify(out.read_bytes())
    assert f"objects/StackForgeTenant/{name}.yaml" in files
    assert "events.yaml" in files and "status.txt" in files
    assert any(f.startswith("objects/StatefulSet/") for f in files)
    secrets = client.CoreV1Api(cluster.api).list_namespaced_secret(ns).items
    assert secrets, "the tenant has generated credentials"
    encoded = {_base64_text(v) for s in secrets for v in (s.data or {}).values()}
    values = {base64.b64decode(v).decode(errors="replace") for v in encoded} | encoded
    values = {v for v in values if len(v) >= 8}
    assert values
    everything = b"".join(files.values()).decode(errors="replace")
    leaked = [v[:4] + "..." for v in values if v in everything]
    assert not leaked, leaked
    for s in secrets:
        kept = yaml.safe_load(files[f"objects/Secret/{name_of(s)}.yaml"])
        assert set(kept.get("data") or {}) == set(s.data or {})  # the keys stay


def _base64_text(value: bytes | str) -> str:
    """A Secret's data value as read: base64 text (the client's model allows bytes too)."""
    assert isinstance(value, str)
    return value


def test_a_drill_now_copies_the_tenants_drill_to_run_once(
        cluster: ClusterHandle, tenant: tuple[str, str]) -> None:
    name, ns = tenant
    refused = plugin(cluster, "drill", name)
    assert refused.returncode == 1
    assert f"tenant {name} has 0 DRDrills (none): name one with --from" in refused.stderr
    monthly: dict[str, Any] = {"apiVersion": "stackforge.io/v1alpha1", "kind": "DRDrill",
                               "metadata": {"name": "monthly", "namespace": ns},
                               "spec": {"tenantRef": {"name": name}, "schedule": "0 3 1 * *",
                                        "timeZone": "Etc/UTC",
                                        "checks": {"queries": [{"name": "one", "sql": "SELECT 1",
                                                                "expectedValue": "1"}]}}}
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(monthly))
    started = plugin(cluster, "drill", name)
    assert started.returncode == 0, started.stderr
    listed = client.CustomObjectsApi(cluster.api).list_namespaced_custom_object(
        "stackforge.io", "v1alpha1", ns, "drdrills")
    assert isinstance(listed, dict)  # the client types a custom object list as a bare object
    drills = listed["items"]
    [made] = [d for d in drills if d["metadata"]["name"].startswith("monthly-now-")]
    assert f"drill {ns}/{made['metadata']['name']} started" in started.stdout
    assert made["spec"]["once"] is True and "schedule" not in made["spec"]
    assert made["spec"]["checks"] == monthly["spec"]["checks"]
    assert made["spec"]["tenantRef"] == {"name": name}
    other = plugin(cluster, "drill", name, "--from", "weekly")
    assert other.returncode == 1 and "none is weekly" in other.stderr


def test_a_restore_is_asked_only_when_confirmed(cluster: ClusterHandle,
                                               tenant: tuple[str, str]) -> None:
    name, ns = tenant
    moment = "2026-12-01T02:00:00Z"
    unconfirmed = subprocess.run(
        [str(PLUGIN), "--kubeconfig", str(cluster.kubeconfig), "restore", name, "--to", moment],
        capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert unconfirmed.returncode == 1
    assert f"--confirm must be exactly {ns}/{name}@{moment}" in unconfirmed.stderr
    wrong = plugin(cluster, "restore", name, "--to", moment,
                   "--confirm", f"other/{name}@{moment}")
    assert wrong.returncode == 1
    assert plugin(cluster, "restore", name, "--to", "yesterday",
                  "--confirm", "x").returncode == 1
    annotations = (tenants.get(cluster, name) or {})["metadata"].get("annotations") or {}
    assert "stackforge.io/recover-to" not in annotations  # nothing asked so far

    asked = plugin(cluster, "restore", name, "--to", moment,
                   "--confirm", f"{ns}/{name}@{moment}")
    assert asked.returncode == 0, asked.stderr
    annotations = (tenants.get(cluster, name) or {})["metadata"]["annotations"]
    assert annotations["stackforge.io/recover-to"] == moment
    assert annotations["stackforge.io/recover-confirm"] == f"{ns}/{name}@{moment}"
    # The operator answers it (refused here: this tenant archives nothing).
    recovery = tenants.eventually(
        lambda: ((tenants.get(cluster, name) or {}).get("status") or {}).get("recovery"),
        timeout=60)
    assert recovery["phase"] == "Refused" and recovery["message"], recovery


def test_the_plugin_users_role_runs_every_command_and_no_role_none(
        cluster: ClusterHandle, tenant: tuple[str, str], tmp_path: Path) -> None:
    """manifests/plugin/clusterrole.yaml is enough for the commands (health and psql,
    which need running pods: tests/realnode/test_plugin.py), and Secrets stay out of
    a report made with it; a user without it is told the API server's 403."""
    name, ns = tenant
    oncall = plugin_user.install(cluster, tmp_path / "oncall.kubeconfig")
    as_oncall = functools.partial(plugin, cluster, kubeconfig=oncall)
    assert as_oncall("status").returncode == 0
    shown = as_oncall("status", name)
    assert shown.returncode == 0 and f"Tenant {name} (namespace {ns})" in shown.stdout
    assert as_oncall("isolate", name).returncode == 0
    tenants.wait_condition(cluster, name, "Isolated", "True")
    assert as_oncall("unisolate", name).returncode == 0
    refused = as_oncall("backup", name)
    assert refused.returncode == 1 and "has 0 BackupPolicies" in refused.stderr
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "stackforge.io/v1alpha1", "kind": "DRDrill",
        "metadata": {"name": "monthly", "namespace": ns},
        "spec": {"tenantRef": {"name": name}, "schedule": "0 3 1 * *"}}))
    drill = as_oncall("drill", name)
    assert drill.returncode == 0, drill.stderr
    out = tmp_path / "report.tar.gz"
    report = as_oncall("report", name, "-f", str(out))
    assert report.returncode == 0, report.stderr
    files = bundle.verify(out.read_bytes())
    assert any(f.startswith("objects/StatefulSet/") for f in files)
    assert not [f for f in files if f.startswith("objects/Secret/")]
    moment = "2026-12-01T02:00:00Z"
    asked = as_oncall("restore", name, "--to", moment, "--confirm", f"{ns}/{name}@{moment}")
    assert asked.returncode == 0, asked.stderr

    stranger = plugin_user.install(cluster, tmp_path / "stranger.kubeconfig", "stranger",
                                   bound=False)
    denied = plugin(cluster, "status", name, kubeconfig=stranger)
    assert denied.returncode == 1
    assert denied.stderr.strip() == "error: the API server answered 403 Forbidden"
