"""Properties every child from every builder must have, across tenant scenarios."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from stackforge_operator import image_catalog
from stackforge_operator.builders import exporters, postgres, stack
from stackforge_operator.builders import secrets_names as sn
from stackforge_operator.builders.common import (
    APP_LABEL,
    COMPONENT_LABEL,
    INSTANCE_LABEL,
    TENANT_LABEL,
    Manifest,
    app_labels,
    labels,
)
from stackforge_operator.models.effective import EffectiveTenant
from stackforge_operator.models.tenant import MAX_TENANT_NAME, RESERVED_APP_NAMES
from tests.unit.builders.runners import pod_specs as all_pod_specs
from tests.unit.builders.runners import runner_objects
from tests.unit.builders.tenants import (
    SCENARIOS,
    everything,
    find,
    merge,
    scenarios,
    tenant,
    workloads,
)

ALL = list(scenarios())
ENTERPRISE_ALL = SCENARIOS["enterprise"]
IDS = [label for label, _ in ALL]
TENANTS = [t for _, t in ALL]

KNOWN_SECRET_KEYS = {
    (sn.POSTGRES_SECRET, sn.POSTGRES_USER_KEY),
    (sn.POSTGRES_SECRET, sn.POSTGRES_PASSWORD_KEY),
    (sn.POSTGRES_SECRET, sn.POSTGRES_SUPERUSER_PASSWORD_KEY),
    (sn.POSTGRES_SECRET, sn.POSTGRES_REPLICATION_PASSWORD_KEY),
    (sn.REDIS_SECRET, sn.REDIS_PASSWORD_KEY),
    (sn.CONSUL_SECRET, sn.CONSUL_GOSSIP_KEY),
}


def pod_specs(manifests: list[Manifest]) -> list[tuple[str, dict[str, Any]]]:
    return [(m["metadata"]["name"], m["spec"]["template"]["spec"]) for m in workloads(manifests)]


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What Pod Security `restricted` (v1.36) would refuse in this pod spec."""
    found = []
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            found.append(flag)
    psc = pod.get("securityContext", {})
    if psc.get("runAsUser") == 0:
        found.append("pod runAsUser 0")
    for vol in pod.get("volumes", []):
        allowed = {
            "name",
            "configMap",
            "emptyDir",
            "secret",
            "persistentVolumeClaim",
            "projected",
            "downwardAPI",
            "ephemeral",
            "csi",
        }
        if set(vol) - allowed:
            found.append(f"volume {vol['name']}: {sorted(set(vol) - allowed)}")
    for c in [*pod.get("initContainers", []), *pod["containers"]]:
        sc = c.get("securityContext", {})
        where = f"container {c['name']}"
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}: allowPrivilegeEscalation")
        if sc.get("privileged"):
            found.append(f"{where}: privileged")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            found.append(f"{where}: capabilities not dropped")
        if set(sc.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{where}: capabilities added")
        run_as_non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if run_as_non_root is not True:
            found.append(f"{where}: runAsNonRoot")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            found.append(f"{where}: runAsUser 0")
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{where}: seccompProfile")
        if any("hostPort" in p for p in c.get("ports", [])):
            found.append(f"{where}: hostPort")
    return found


@pytest.mark.parametrize("t", TENANTS, ids=IDS)
def test_every_workload_passes_pod_security_restricted(t: EffectiveTenant) -> None:
    specs = pod_specs(everything(t))
    assert specs  # Kong at least, in every scenario
    for name, pod in specs:
        assert restricted_violations(pod) == [], name


@pytest.mark.parametrize("t", TENANTS, ids=IDS)
def test_pods_get_no_api_token_and_no_service_links(t: EffectiveTenant) -> None:
    for name, pod in pod_specs(everything(t)):
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["enableServiceLinks"] is False, name


@pytest.mark.parametrize("t", TENANTS, ids=IDS)
def test_every_stack_container_with_a_readiness_probe_starts_with_the_same_check(
        t: EffectiveTenant) -> None:
    """Seen ready within a second of passing at each start (builders/common.py
    startup_probe); Redis's also passes while it loads its data. Not the
    replicas' server: its liveness probe, which a startup probe would hold back
    until the copy first is ready, is what re-clones one that never can be."""
    checked = 0
    for name, pod in pod_specs(everything(t)):
        for c in pod["containers"]:
            if "readinessProbe" not in c:
                continue
            if (name, c["name"]) == (postgres.REPLICA_NAME, "postgres"):
                assert "startupProbe" not in c
                continue
            checked += 1
            check = {k: v for k, v in c["readinessProbe"].items() if k not in
                     ("periodSeconds", "failureThreshold", "successThreshold")}
            if (name, c["name"]) == ("redis", "redis"):
                # Started while it loads its data too (LOADING): tests/unit/builders/
                # test_redis.py runs both commands.
                check = {**check, "exec": c["startupProbe"]["exec"]}
            startup = c["startupProbe"]
            assert {k: v for k, v in startup.items()
                    if k not in ("periodSeconds", "failureThreshold")} == check, (name, c["name"])
            assert startup["periodSeconds"] == 1, (name, c["name"])
    assert checked  # Kong at least, in every scenario


def test_the_checker_catches_a_privileged_pod() -> None:
    bad = {
        "hostNetwork": True,
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        "containers": [{"name": "c", "securityContext": {"privileged": True}}],
    }
    assert len(restricted_violations(bad)) >= 6


@pytest.mark.parametrize("t", TENANTS, ids=IDS)
def test_credentials_only_by_secret_reference(t: EffectiveTenant) -> None:
    """Every secret a container gets is a secretKeyRef to a generated Secret key."""
    text = json.dumps(everything(t))
    for name, pod in pod_specs(everything(t)):
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert (ref["name"], ref["key"]) in KNOWN_SECRET_KEYS, (name, e)
                    assert "value" not in e
                elif any(w in e["name"] for w in ("PASSWORD", "AUTH", "GOSSIP", "TOKEN")):
                    pytest.fail(f"{name}/{c['name']}: {e['name']} is not a secretKeyRef")
    # No Secret objects and no inline data from this task's builders.
    assert '"kind": "Secret"' not in text
    assert '"stringData"' not in text


@pytest.mark.parametrize("t", TENANTS, ids=IDS)
def test_metadata_namespace_labels_and_no_owner_references(t: EffectiveTenant) -> None:
    for m in everything(t):
        meta = m["metadata"]
        assert meta["namespace"] == t.namespace
        assert meta["labels"][TENANT_LABEL] == t.name
        assert "ownerReferences" not in meta
        assert "generateName" not in meta
        app = meta["labels"].get(APP_LABEL)
        if app is not None:
            assert meta["labels"] == app_labels(t, app)
        else:
            assert meta["labels"] == labels(t, meta["labels"][COMPONENT_LABEL])


@pytest.mark.parametrize("t", TENANTS, ids=IDS)
def test_names_are_unique_per_kind(t: EffectiveTenant) -> None:
    keys = [(m["kind"], m["metadata"]["name"]) for m in everything(t)]
    assert len(keys) == len(set(keys))


def test_component_object_names_are_reserved() -> None:
    """Every name the components' objects take (their metrics Services included) is
    one no app may take: an app named like the postgres Service made the two
    overwrite each other at every reconcile (the model refuses reserved names)."""
    t = tenant(ENTERPRISE_ALL)
    app_names = {a.name for a in t.apps}
    built = [*everything(t), *exporters.metrics_services(t)]
    fixed = {m["metadata"]["name"] for m in built} - app_names
    assert fixed <= set(RESERVED_APP_NAMES), fixed - set(RESERVED_APP_NAMES)
    assert not app_names & set(RESERVED_APP_NAMES)


@pytest.mark.parametrize("t", TENANTS, ids=IDS)
def test_selectors_match_their_own_pods_only(t: EffectiveTenant) -> None:
    wl = workloads(everything(t))
    for owner in wl:
        selector = owner["spec"]["selector"]["matchLabels"]
        for other in wl:
            pod_labels = other["spec"]["template"]["metadata"]["labels"]
            matches = selector.items() <= pod_labels.items()
            assert matches == (other is owner), (
                owner["metadata"]["name"],
                other["metadata"]["name"],
            )


@pytest.mark.parametrize("t", TENANTS, ids=IDS)
def test_every_workloads_pods_prefer_nodes_apart_and_replicas_their_primarys(
    t: EffectiveTenant,
) -> None:
    """Three Consul servers or Kafka controllers on one node lost their quorum with
    it, and a read replica beside its primary went down with it: no workload had
    any affinity."""
    wl = workloads(everything(t))
    assert wl
    for owner in wl:
        terms = owner["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"]
        apart = [term["podAffinityTerm"]["labelSelector"]["matchLabels"] for term in terms]
        assert all(term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
                   and term["weight"] == 100 for term in terms), terms
        expected = [owner["spec"]["selector"]["matchLabels"]]
        if owner["metadata"]["name"] == postgres.REPLICA_NAME:
            expected.append(find(wl, "StatefulSet", postgres.NAME)["spec"]["selector"][
                "matchLabels"])
        assert apart == expected, owner["metadata"]["name"]


@pytest.mark.parametrize("t", TENANTS, ids=IDS)
def test_services_select_existing_pods(t: EffectiveTenant) -> None:
    objs = everything(t)
    pods = [w["spec"]["template"]["metadata"]["labels"] for w in workloads(objs)]
    for svc in (m for m in objs if m["kind"] == "Service"):
        selector = svc["spec"]["selector"]
        assert any(selector.items() <= p.items() for p in pods), svc["metadata"]["name"]


@pytest.mark.parametrize("label", list(SCENARIOS))
def test_same_input_gives_byte_identical_output(label: str) -> None:
    first = json.dumps(everything(tenant(SCENARIOS[label])))
    second = json.dumps(everything(tenant(SCENARIOS[label])))
    assert first == second


def test_output_is_plain_json_data() -> None:
    objs = everything(tenant(ENTERPRISE_ALL))
    assert json.loads(json.dumps(objs)) == objs


def test_suspend_scales_every_workload_to_zero_and_keeps_the_rest() -> None:
    running = everything(tenant(ENTERPRISE_ALL))
    suspended = everything(tenant(merge(ENTERPRISE_ALL, {"suspend": True})))
    for w in workloads(suspended):
        assert w["spec"]["replicas"] == 0, w["metadata"]["name"]
    # Nothing is deleted but the PDBs; pod templates stay as they were.
    kinds = {(m["kind"], m["metadata"]["name"]) for m in running}
    kept = {(m["kind"], m["metadata"]["name"]) for m in suspended}
    assert kinds - kept == {k for k in kinds if k[0] == "PodDisruptionBudget"}
    by_key = {(m["kind"], m["metadata"]["name"]): m for m in running}
    for w in workloads(suspended):
        before = by_key[(w["kind"], w["metadata"]["name"])]
        assert w["spec"]["template"] == before["spec"]["template"]


# --------------------------------------------------------------------------- images


def every_pod(t: EffectiveTenant) -> list[tuple[str, dict[str, Any]]]:
    """Every pod the operator creates for ``t``: its stack, backup and drill runners, and
    the drill's scratch database."""
    children = stack.desired_children(t, secrets=[], tls=None, rotation=None)
    return all_pod_specs([*children, *runner_objects(t)])


def test_every_pod_is_found() -> None:
    # The shape-based search must see every kind of pod owner, or the tests
    # below prove nothing for the ones it misses.
    owners = {where.split("/")[0] for where, _ in every_pod(tenant(ENTERPRISE_ALL))}
    assert owners == {"Deployment", "StatefulSet", "CronJob", "Job"}
    names = {where for where, _ in every_pod(tenant(ENTERPRISE_ALL))}
    assert {"StatefulSet/scratch-postgres", "Job/drill-restore",
            "CronJob/backup-acme-nightly", "Deployment/pooler"} <= names


@pytest.mark.parametrize("t", TENANTS, ids=IDS)
def test_pull_secrets_reach_every_pod(t: EffectiveTenant) -> None:
    image_catalog.install(image_catalog.from_settings(
        {image_catalog.PULL_SECRETS_ENV: "regcred, mirror-pull,regcred"}))
    for where, pod in every_pod(t):
        assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror-pull"}], where


@pytest.mark.parametrize("t", TENANTS, ids=IDS)
def test_no_pull_secrets_field_without_pull_secrets(t: EffectiveTenant) -> None:
    # An empty list would be a field the operator owns for nothing.
    for where, pod in every_pod(t):
        assert "imagePullSecrets" not in pod, where


@pytest.mark.parametrize("t", TENANTS, ids=IDS)
def test_every_image_but_the_apps_comes_from_the_catalog(t: EffectiveTenant) -> None:
    registry = "mirror.example.internal:5000/team"
    image_catalog.install(image_catalog.from_settings({image_catalog.REGISTRY_ENV: registry}))
    apps = {app.image for app in t.apps}
    for where, pod in every_pod(t):
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            if c["image"] in apps:
                continue  # the tenant's own images, as the tenant wrote them
            assert c["image"].startswith(f"{registry}/"), (where, c["name"], c["image"])


def test_default_images_name_no_registry() -> None:
    t = tenant(ENTERPRISE_ALL)
    apps = {app.image for app in t.apps}
    images = {c["image"] for _, pod in every_pod(t)
              for c in [*pod.get("initContainers", []), *pod["containers"]]} - apps
    assert images and not any(image_catalog.has_host(i) for i in images), images


# --------------------------------------------------------------------------- label values

LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _label_maps(obj: Any) -> Iterator[dict[str, str]]:
    """Every labels / matchLabels / selector map in ``obj``, however deep."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("labels", "matchLabels") and isinstance(value, dict):
                yield value
            yield from _label_maps(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from _label_maps(item)


def test_every_label_value_is_one_the_api_server_takes_for_the_longest_names() -> None:
    """A tenant name of 56 with "-postgres-replica", or an app's name of up to 40,
    made an instance label over 63 characters: the API server refused the read
    replicas, the app and, from "-network", every NetworkPolicy."""
    longest = "t" * MAX_TENANT_NAME
    app = "a" + "p" * 39
    t = tenant(merge(ENTERPRISE_ALL, {"components": {"apps": [
        {"name": app, "image": "registry.example.com/shop/api:1.0.0", "port": 8080}]}}),
        name=longest)
    children = stack.desired_children(t, secrets=[], tls=None, rotation=None)
    bad = [(m["kind"], m["metadata"]["name"], value)
           for m in [*children, *runner_objects(t)] for found in _label_maps(m)
           for value in found.values() if len(value) > 63 or not LABEL_VALUE.match(value)]
    assert bad == []
    # Distinct per component, and a value that fits is as it always was.
    replica = labels(t, "postgres-replica")[INSTANCE_LABEL]
    assert replica != labels(t, "postgres")[INSTANCE_LABEL]
    assert replica.startswith(longest[:40])
    assert labels(tenant(), "postgres")[INSTANCE_LABEL] == "acme-postgres"
