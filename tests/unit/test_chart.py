"""charts/stackforge-operator/ rendered by Helm's own library (the control-plane binary).

The chart must install what manifests/ installs: the same rules (both come
from rbac.py), the same pod (security context, probes, resources, env), with
only names of cluster-scoped objects, labels and the namespace depending on
the release. Needs the binary (built on first use), not a cluster.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from stackforge_operator import admission, image_catalog, rbac
from tests.support import helm
from tests.support.helm import CHART, NAMESPACE, RELEASE, HelmError, find, only, template
from tests.support.pod_security import restricted_violations
from tests.unit import test_manifests as manifests

CLUSTER_NAME = f"stackforge-operator:{NAMESPACE}:{RELEASE}"
READER_CLUSTER_NAME = f"{rbac.KUBELET_READER}:{NAMESPACE}:{RELEASE}"
# The operator's ClusterRole(Binding), not the kubelet reader's.
OPERATOR_ROLE = "stackforge-operator:"
POLICY_NAME = f"stackforge-tenant-namespace.{NAMESPACE}.{RELEASE}"


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return template()


def _pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = only(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = _pod_spec(docs)["containers"]
    assert len(containers) == 1
    return containers[0]


# --------------------------------------------------------------------------- same as manifests/


def test_renders_the_objects_manifests_install(rendered: list[dict[str, Any]]) -> None:
    # The namespace comes from `helm install -n ... --create-namespace`, the CRDs from crds/.
    expected = {(kind, name) for kind, name in manifests.EXPECTED
                if kind not in ("Namespace", "CustomResourceDefinition")}
    renamed = {("ClusterRole", manifests.NAME): CLUSTER_NAME,
               ("ClusterRoleBinding", manifests.NAME): CLUSTER_NAME,
               ("ClusterRole", rbac.KUBELET_READER): READER_CLUSTER_NAME,
               ("ClusterRoleBinding", rbac.KUBELET_READER): READER_CLUSTER_NAME,
               ("ValidatingAdmissionPolicy", admission.POLICY_NAME): POLICY_NAME,
               ("ValidatingAdmissionPolicyBinding", admission.POLICY_NAME): POLICY_NAME}
    expected = {(kind, renamed.get((kind, name), name)) for kind, name in expected}
    assert {(d["kind"], d["metadata"]["name"]) for d in rendered} == expected


def test_cluster_role_has_the_manifests_rules(rendered: list[dict[str, Any]]) -> None:
    rules = only(rendered, "ClusterRole", OPERATOR_ROLE)["rules"]
    assert rules == manifests.one("ClusterRole", manifests.NAME)["rules"]
    assert rules == rbac.policy_rules(rbac.CLUSTER_ROLE_RULES)


def test_the_kubelet_reader_and_the_operators_role_are_the_manifests(
        rendered: list[dict[str, Any]]) -> None:
    """The same rules as manifests/kubelet-reader.yaml, bound to the release's accounts."""
    reader_role = only(rendered, "ClusterRole", rbac.KUBELET_READER)
    assert reader_role["rules"] == manifests.one("ClusterRole", rbac.KUBELET_READER)["rules"]
    reader_binding = only(rendered, "ClusterRoleBinding", rbac.KUBELET_READER)
    assert reader_binding["roleRef"]["name"] == READER_CLUSTER_NAME
    assert reader_binding["subjects"] == [{"kind": "ServiceAccount",
                                           "name": rbac.KUBELET_READER,
                                           "namespace": NAMESPACE}]
    assert only(rendered, "ServiceAccount", rbac.KUBELET_READER)[
        "automountServiceAccountToken"] is False
    role = only(rendered, "Role")
    assert role["rules"] == manifests.one("Role", manifests.NAME)["rules"]
    assert only(rendered, "RoleBinding")["subjects"] == [
        {"kind": "ServiceAccount", "name": manifests.NAME, "namespace": NAMESPACE}]


def test_admission_policy_is_the_manifests_policy(rendered: list[dict[str, Any]]) -> None:
    policy = only(rendered, "ValidatingAdmissionPolicy")
    assert policy["spec"] == manifests.one("ValidatingAdmissionPolicy")["spec"]
    binding = only(rendered, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": POLICY_NAME, "validationActions": ["Deny"]}


def test_the_release_namespace_is_reserved_when_it_is_not_the_manifests() -> None:
    """The operator's own namespace may hold no tenant: its default-deny policy
    there would cut the operator off."""
    validations = only(template(namespace="ops"), "ValidatingAdmissionPolicy")["spec"][
        "validations"]
    assert validations[:-1] == manifests.one("ValidatingAdmissionPolicy")["spec"]["validations"]
    assert validations[-1] == {
        "expression": 'request.namespace != "ops"',
        "message": "namespace ops is the StackForge operator's own; put the tenant in a "
                   "namespace of its own",
        "reason": "Forbidden"}


def test_binding_ties_the_role_to_the_release_service_account() -> None:
    docs = template(release="other", namespace="ops")
    binding = only(docs, "ClusterRoleBinding", OPERATOR_ROLE)
    role = only(docs, "ClusterRole", OPERATOR_ROLE)
    # Cluster-scoped names carry namespace and release: no clash with manifests/ or another release.
    assert role["metadata"]["name"] == "stackforge-operator:ops:other"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "stackforge-operator",
                                    "namespace": "ops"}]
    assert _pod_spec(docs)["serviceAccountName"] == "stackforge-operator"


def test_namespaced_objects_live_in_the_release_namespace() -> None:
    for doc in template(namespace="ops"):
        if doc["kind"] in ("ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering",
                           "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
            assert "namespace" not in doc["metadata"]
        else:
            assert doc["metadata"]["namespace"] == "ops", doc["kind"]


def test_deployment_is_the_manifests_deployment(rendered: list[dict[str, Any]]) -> None:
    ours, theirs = only(rendered, "Deployment"), manifests.one("Deployment", manifests.NAME)
    # Everything in the pod but its labels is identical: security contexts,
    # probes, resources, env, ports, volumes, node selector.
    assert _pod_spec(rendered) == manifests.pod_spec()
    assert ours["spec"]["replicas"] == theirs["spec"]["replicas"] == 2
    assert ours["spec"]["strategy"] == theirs["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    # The release's instance label narrows the selector; the manifests' labels remain.
    assert theirs["spec"]["selector"]["matchLabels"].items() <= (
        ours["spec"]["selector"]["matchLabels"].items())
    assert theirs["spec"]["template"]["metadata"]["labels"].items() <= (
        ours["spec"]["template"]["metadata"]["labels"].items())
    assert theirs["metadata"]["labels"].items() <= ours["metadata"]["labels"].items()


def test_peering_is_the_manifests_peering(rendered: list[dict[str, Any]]) -> None:
    ours = only(rendered, "ClusterKopfPeering")
    theirs = manifests.one("ClusterKopfPeering", rbac.PEERING_NAME)
    assert ours["apiVersion"] == theirs["apiVersion"] == "kopf.dev/v1"
    assert ours["metadata"]["name"] == theirs["metadata"]["name"]
    # The Argo CD sync wave and dry-run option: the CRD must be there first.
    assert ours["metadata"]["annotations"] == theirs["metadata"]["annotations"]
    assert theirs["metadata"]["labels"].items() <= ours["metadata"]["labels"].items()
    assert ours.keys() == theirs.keys() == {"apiVersion", "kind", "metadata"}


def test_disruption_budget_is_the_manifests_budget(rendered: list[dict[str, Any]]) -> None:
    ours = only(rendered, "PodDisruptionBudget")
    theirs = manifests.one("PodDisruptionBudget", manifests.NAME)
    assert ours["spec"]["maxUnavailable"] == theirs["spec"]["maxUnavailable"] == 1
    assert theirs["spec"]["selector"]["matchLabels"].items() <= (
        ours["spec"]["selector"]["matchLabels"].items())
    # It selects exactly the Deployment's pods.
    assert ours["spec"]["selector"] == only(rendered, "Deployment")["spec"]["selector"]
    assert theirs["metadata"]["labels"].items() <= ours["metadata"]["labels"].items()


def test_service_is_the_manifests_service(rendered: list[dict[str, Any]]) -> None:
    ours = only(rendered, "Service")
    theirs = manifests.one("Service", f"{manifests.NAME}-metrics")
    assert ours["spec"]["ports"] == theirs["spec"]["ports"]
    pod_labels = only(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert ours["spec"]["selector"].items() <= pod_labels.items()


def test_pod_meets_the_restricted_profile(rendered: list[dict[str, Any]]) -> None:
    assert restricted_violations(_pod_spec(rendered)) == []


def test_crds_are_the_repository_crds() -> None:
    crds = find(template(include_crds=True), "CustomResourceDefinition")
    on_disk = [d for p in sorted((helm.REPO / "crds").glob("*.yaml"))
               for d in yaml.safe_load_all(p.read_text()) if d]
    key = lambda d: d["metadata"]["name"]  # noqa: E731
    assert sorted(crds, key=key) == sorted(on_disk, key=key)


def test_lint_passes() -> None:
    out = helm.lint()
    assert "0 chart(s) failed" in out
    for replicas in ("0", "1", "2", "3"):
        out = helm.lint("--strict", "--set", f"replicaCount={replicas}",
                        "--set", "grafanaDashboard.enabled=true",
                        "--set", "argocdHealthChecks.enabled=true")
        assert "0 chart(s) failed" in out
    out = helm.lint("--strict", "--set", "images.overrides.redis=acme/redis:{version}",
                    "--set", "images.registry=mirror.example.internal:5000/team",
                    "--set", "images.pullSecrets[0]=regcred")
    assert "0 chart(s) failed" in out


def test_lint_fails_on_values_the_schema_refuses() -> None:
    with pytest.raises(HelmError) as refused:
        helm.lint("--set", "replicaCount=-1")
    assert "1 chart(s) failed" in str(refused.value)
    assert "/replicaCount" in str(refused.value)


def test_helm_usage_errors_exit_non_zero() -> None:
    with pytest.raises(HelmError, match="expected 2 arguments"):
        helm.helm("template", str(CHART))
    with pytest.raises(HelmError, match="unknown command"):
        helm.helm("install", RELEASE, str(CHART))


# --------------------------------------------------------------------------- values.schema.json


@pytest.mark.parametrize(("args", "field", "problem"), [
    (["--set", "replicaCount=-1"], "/replicaCount", "minimum"),
    (["--set", "replicaCount=two"], "/replicaCount", "want integer"),
    (["--set", "replicas=2"], "additional properties 'replicas'", "not allowed"),
    (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy", "one of"),
    (["--set", "image.registry=x"], "/image", "additional properties 'registry'"),
    (["--set", "resyncSeconds=0"], "/resyncSeconds", "minimum"),
    (["--set", "metrics.port=70000"], "/metrics/port", "maximum"),
    (["--set", "metrics.port=8080"], "/metrics/port", "not"),
    (["--set", "resources.limits.memory=lots"], "/resources/limits/memory", ""),
    (["--set", "grafanaDashboard.enabled=yes please"], "/grafanaDashboard/enabled",
     "want boolean"),
    (["--set", "extraEnv[0].name=HOME", "--set", "extraEnv[0].value=/x"],
     "/extraEnv/0/name", "not"),
    (["--set", "tolerations[0].operator=Maybe"], "/tolerations/0/operator", "one of"),
    (["--set", "extraEnv[0].name=POD_ID", "--set", "extraEnv[0].value=x"],
     "/extraEnv/0/name", "not"),
    (["--set", "peering.lifetimeSeconds=5"], "/peering/lifetimeSeconds", "minimum"),
    (["--set", "peering.name=Stack_Forge"], "/peering/name", "does not match pattern"),
    (["--set", "peering.leader=x"], "/peering", "additional properties 'leader'"),
    (["--set", "affinity.podAntiAffinity=nearby"], "/affinity/podAntiAffinity",
     "want object"),
    (["--set", "images.overrides.zookeeper=zk:3"], "/images/overrides",
     "additional properties 'zookeeper'"),
    (["--set", "images.overrides.operator=acme/op:1"], "/images/overrides",
     "additional properties 'operator'"),
    (["--set", "images.overrides.postgres=postgres:16"], "/images/overrides/postgres",
     "does not match pattern '\\\\{major\\\\}'"),
    (["--set", "images.overrides.redis=redis:7.2"], "/images/overrides/redis",
     "does not match pattern '\\\\{version\\\\}'"),
    # A placeholder its role does not take: the operator refused it at start-up,
    # a crash loop on install (or a stuck rollout on upgrade).
    (["--set-string", "images.overrides.pgbouncer=stackforge/pgbouncer:{version}"],
     "/images/overrides/pgbouncer", "does not match pattern"),
    (["--set-string", "images.overrides.postgres-exporter=acme/exporter:{version}"],
     "/images/overrides/postgres-exporter", "does not match pattern"),
    (["--set-string", "images.overrides.redis=acme/redis:{version}-{major}"],
     "/images/overrides/redis", "does not match pattern"),
    (["--set", "images.registry=https://mirror.example.internal"], "/images/registry",
     "does not match pattern"),
    (["--set", "images.pullSecrets[0]=Bad_Name"], "/images/pullSecrets/0",
     "does not match pattern"),
    (["--set", "images.mirror=x"], "/images", "additional properties 'mirror'"),
    (["--set", "extraEnv[0].name=STACKFORGE_IMAGE_REGISTRY", "--set", "extraEnv[0].value=x"],
     "/extraEnv/0/name", "not"),
    (["--set", "extraEnv[0].name=POD_NAMESPACE", "--set", "extraEnv[0].value=x"],
     "/extraEnv/0/name", "not"),
])
def test_schema_rejects_bad_values(args: list[str], field: str, problem: str) -> None:
    with pytest.raises(HelmError) as refused:
        helm.helm("template", RELEASE, str(CHART), "-n", NAMESPACE, *args)
    message = str(refused.value)
    assert "values don't meet the specifications of the schema" in message
    assert field in message and problem in message, message


def test_schema_rejects_a_values_file_of_the_wrong_shape(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("resources: big\nnodeSelector: [linux]\n")
    with pytest.raises(HelmError) as refused:
        template(value_files=[values])
    assert "/resources" in str(refused.value) and "/nodeSelector" in str(refused.value)


def test_every_default_value_is_described_by_the_schema() -> None:
    # additionalProperties: false everywhere, so a key added to values.yaml but
    # not to the schema would fail every install; render the defaults explicitly.
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(defaults) == set(schema["properties"])
    template(value_files=[CHART / "values.yaml"])


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("replicas", [2, 3])
def test_several_replicas_peer(replicas: int) -> None:
    docs = template(values={"replicaCount": str(replicas)})
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == replicas
    # Peering elects one active replica, so old and new may run during a rollout.
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    container = _container(docs)
    assert container["args"] == [
        "run", "--liveness=http://0.0.0.0:8080/healthz", "--peering=stackforge",
        "--priority=auto"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["STACKFORGE_PEERING_LIFETIME_SECONDS"]["value"] == "20"
    assert only(docs, "ClusterKopfPeering")["metadata"]["name"] == rbac.PEERING_NAME
    assert only(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    rules = only(docs, "ClusterRole", OPERATOR_ROLE)["rules"]
    assert rules == rbac.policy_rules((*rbac.REQUIRED_RULES, *rbac.PEERING_RULES))


@pytest.mark.parametrize("replicas", [0, 1])
def test_one_replica_is_a_standalone_operator(replicas: int) -> None:
    docs = template(values={"replicaCount": str(replicas)})
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == replicas
    # Two kopf operators without peering would both reconcile: never both at once.
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = _container(docs)
    assert container["args"] == ["run", "--liveness=http://0.0.0.0:8080/healthz"]
    assert not {"POD_ID", "STACKFORGE_PEERING_LIFETIME_SECONDS"} & {
        e["name"] for e in container["env"]}
    assert find(docs, "ClusterKopfPeering") == []
    assert find(docs, "PodDisruptionBudget") == []
    assert not any("kopf.dev" in r["apiGroups"]
                   for r in only(docs, "ClusterRole", OPERATOR_ROLE)["rules"])
    # Otherwise the same pod as the default, peered one.
    default = template()
    peered = _pod_spec(default)
    peered["containers"][0]["args"] = peered["containers"][0]["args"][:2]
    peered["containers"][0]["env"] = [
        e for e in peered["containers"][0]["env"]
        if e["name"] not in ("POD_ID", "STACKFORGE_PEERING_LIFETIME_SECONDS")]
    assert _pod_spec(docs) == peered
    kinds = {d["kind"] for d in default} - {"ClusterKopfPeering", "PodDisruptionBudget"}
    assert {d["kind"] for d in docs} == kinds


def test_peering_name_and_lifetime_are_values() -> None:
    docs = template(values={"peering.name": "sf-blue", "peering.lifetimeSeconds": "45"})
    assert only(docs, "ClusterKopfPeering")["metadata"]["name"] == "sf-blue"
    container = _container(docs)
    assert "--peering=sf-blue" in container["args"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["STACKFORGE_PEERING_LIFETIME_SECONDS"] == "45"
    # The ClusterRole may patch that peering object and no other.
    rules = only(docs, "ClusterRole", OPERATOR_ROLE)["rules"]
    named = [r for r in rules if "kopf.dev" in r["apiGroups"] and "resourceNames" in r]
    assert [r["resourceNames"] for r in named] == [["sf-blue"]]
    assert len(rules) == len(rbac.policy_rules(rbac.CLUSTER_ROLE_RULES))


def test_anti_affinity_merges_with_user_affinity_and_can_be_removed() -> None:
    default = _pod_spec(template())["affinity"]
    assert default == manifests.pod_spec()["affinity"]
    merged = _pod_spec(template(values={
        "affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight": "1",
        "affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0]"
        ".preference.matchExpressions[0].key": "zone",
        "affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0]"
        ".preference.matchExpressions[0].operator": "Exists",
    }))["affinity"]
    assert merged["podAntiAffinity"] == default["podAntiAffinity"]
    assert "nodeAffinity" in merged
    # null removes a default, as everywhere in Helm: no affinity at all.
    assert "affinity" not in _pod_spec(template(values={"affinity.podAntiAffinity": "null"}))


def test_values_reach_the_pod(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({
        "image": {"repository": "registry.example/sf", "tag": "1.2.3", "pullPolicy": "Always"},
        "resyncSeconds": 120, "stalledRecheckSeconds": 15, "metrics": {"port": 9100},
        # Helm merges maps with the defaults; null removes a default (no CPU limit).
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"},
                      "limits": {"cpu": None, "memory": "1Gi"}},
        "nodeSelector": {"pool": "ops"},
        "tolerations": [{"key": "ops", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
        "podAnnotations": {"team": "platform"},
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
    }))
    docs = template(value_files=[values])
    pod, container = _pod_spec(docs), _container(docs)
    assert container["image"] == "registry.example/sf:1.2.3"
    assert container["imagePullPolicy"] == "Always"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["STACKFORGE_RESYNC_SECONDS"] == "120"
    assert env["STACKFORGE_STALLED_RECHECK_SECONDS"] == "15"
    assert env["STACKFORGE_METRICS_PORT"] == "9100"
    assert env["HTTPS_PROXY"] == "http://proxy:3128"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "healthz": 8080, "metrics": 9100}
    assert only(docs, "Service")["spec"]["ports"][0]["port"] == 9100
    assert container["resources"] == {"requests": {"cpu": "50m", "memory": "128Mi"},
                                      "limits": {"memory": "1Gi"}}
    # Merged with the default, as Helm merges every map.
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", "pool": "ops"}
    assert pod["tolerations"] == [{"key": "ops", "operator": "Exists", "effect": "NoSchedule"}]
    assert "nodeAffinity" in pod["affinity"]
    template_meta = only(docs, "Deployment")["spec"]["template"]["metadata"]
    assert template_meta["annotations"] == {"team": "platform"}
    assert restricted_violations(pod) == []


def test_metrics_port_zero_turns_metrics_off() -> None:
    docs = template(values={"metrics.port": "0"})
    assert find(docs, "Service") == []
    container = _container(docs)
    assert [p["name"] for p in container["ports"]] == ["healthz"]
    assert {e["name"]: e.get("value") for e in container["env"]}["STACKFORGE_METRICS_PORT"] == "0"


def test_grafana_dashboard_is_optional(rendered: list[dict[str, Any]]) -> None:
    assert find(rendered, "ConfigMap") == []
    docs = template(values={"grafanaDashboard.enabled": "true",
                            "grafanaDashboard.namespace": "monitoring",
                            "grafanaDashboard.labels.team": "platform"})
    dashboard = only(docs, "ConfigMap")
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["labels"]["team"] == "platform"
    shipped = json.loads((CHART / "dashboards" / "operator.json").read_text())
    assert json.loads(dashboard["data"]["stackforge-operator.json"]) == shipped


def test_argocd_health_checks_are_optional(rendered: list[dict[str, Any]]) -> None:
    assert find(rendered, "ConfigMap") == []
    config = only(template(values={"argocdHealthChecks.enabled": "true"}), "ConfigMap")
    assert config["metadata"]["namespace"] == NAMESPACE
    patch = yaml.safe_load((manifests.MANIFESTS / "argocd" / "argocd-cm.yaml").read_text())
    # The same keys and script as the argocd-cm patch in manifests/argocd/.
    assert config["data"] == patch["data"]


# --------------------------------------------------------------------------- images


def test_default_images_add_no_objects_and_no_catalog_file(rendered: list[dict[str, Any]]) -> None:
    pod = _pod_spec(rendered)
    assert "imagePullSecrets" not in pod
    env = {e["name"]: e.get("value") for e in _container(rendered)["env"]}
    assert env[image_catalog.REGISTRY_ENV] is None and env[image_catalog.PULL_SECRETS_ENV] is None
    assert image_catalog.CATALOG_ENV not in env
    assert find(rendered, "ConfigMap") == []


def test_image_values_reach_the_operator(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({
        "imagePullSecrets": [{"name": "operator-pull"}, {"name": "regcred"}],
        "images": {
            "registry": "mirror.example.internal:5000/team",
            "pullSecrets": ["regcred", "mirror-pull"],
            "overrides": {"redis": "acme/redis:{version}",
                          "postgres-exporter": "prom/postgres-exporter:v0.17.1"},
        },
    }))
    docs = template(value_files=[values])
    pod, container = _pod_spec(docs), _container(docs)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env[image_catalog.REGISTRY_ENV] == "mirror.example.internal:5000/team"
    # Its backup and drill Jobs run its own image: they need its pull secrets too
    # (they had only the catalog's, and pulled a private operator image in vain).
    assert env[image_catalog.PULL_SECRETS_ENV] == "operator-pull,regcred,mirror-pull"
    # The operator's own pod pulls with its secrets and the catalog's, each once.
    assert pod["imagePullSecrets"] == [
        {"name": "operator-pull"}, {"name": "regcred"}, {"name": "mirror-pull"}]
    # The overrides become the catalog file, mounted where the variable says.
    config_map = only(docs, "ConfigMap")
    assert config_map["metadata"]["name"] == "stackforge-operator-images"
    path = Path(env[image_catalog.CATALOG_ENV])
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "image-catalog"]
    assert Path(mount["mountPath"]) == path.parent and mount["readOnly"] is True
    [volume] = [v for v in pod["volumes"] if v["name"] == "image-catalog"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    catalog = image_catalog.load({
        image_catalog.REGISTRY_ENV: env[image_catalog.REGISTRY_ENV],
        image_catalog.PULL_SECRETS_ENV: env[image_catalog.PULL_SECRETS_ENV],
        image_catalog.CATALOG_ENV: str(_written(tmp_path, config_map, path.name)),
    })
    assert catalog.redis_image("7.2") == "mirror.example.internal:5000/team/acme/redis:7.2"
    assert catalog.postgres_exporter_image(15) == (
        "mirror.example.internal:5000/team/prom/postgres-exporter:v0.17.1")
    assert catalog.image_pull_secrets == ("operator-pull", "regcred", "mirror-pull")
    # The operator reads the file once: a changed catalog rolls the pod.
    annotations = only(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    values.write_text(yaml.safe_dump({"images": {"overrides": {"redis": "b/redis:{version}"}}}))
    changed = only(template(value_files=[values]), "Deployment")
    key = "stackforge.io/image-catalog-checksum"
    assert changed["spec"]["template"]["metadata"]["annotations"][key] != annotations[key]


def _written(directory: Path, config_map: dict[str, Any], key: str) -> Path:
    path = directory / key
    path.write_text(config_map["data"][key])
    return path


def test_each_override_takes_exactly_the_placeholder_of_its_catalog_role() -> None:
    """The schema let {major} and {version} into any role, which the operator then
    refused at start-up: every role's schema now names its catalog role's own."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    overrides = schema["properties"]["images"]["properties"]["overrides"]["properties"]
    wanted = {None: "#/definitions/imageReference",
              image_catalog.MAJOR: "#/definitions/majorImage",
              image_catalog.VERSION_PLACEHOLDER: "#/definitions/versionedImage"}
    for role in image_catalog.ROLES:
        if role.key == "operator":
            assert role.key not in overrides  # the Jobs run the Deployment's image
            continue
        refs = {overrides[role.key].get("$ref"),
                *(part.get("$ref") for part in overrides[role.key].get("allOf", []))}
        assert wanted[role.placeholder] in refs, (role.key, refs)
