"""Names, labels and security settings every child object shares."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from stackforge_operator import API_GROUP, image_catalog
from stackforge_operator.models.cel import MAX_LABEL_VALUE
from stackforge_operator.models.effective import EffectiveTenant, Resources

Manifest = dict[str, Any]

TENANT_LABEL = f"{API_GROUP}/tenant"
COMPONENT_LABEL = "app.kubernetes.io/component"
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
PART_OF_LABEL = "app.kubernetes.io/part-of"
# App services share the component "app" and are told apart by this label.
APP_LABEL = f"{API_GROUP}/app"
APP_COMPONENT = "app"
# Pods of backup and drill runners; the database admits them.
RUNNER_LABEL = f"{API_GROUP}/runner"
MANAGED_BY = "stackforge-operator"
PART_OF = "stackforge"

# The namespace manifests/ installs the operator into, and the operator's own
# namespace when it runs outside a pod (development, the tests).
OPERATOR_NAMESPACE = "stackforge-system"


def operator_namespace(environ: Mapping[str, str] = os.environ) -> str:
    """The namespace the operator runs in: its pod's (POD_NAMESPACE, from the
    downward API, as the Deployment and the chart set it), else
    :data:`OPERATOR_NAMESPACE`. Tenant NetworkPolicies admit the operator from
    it (isolation keeps exactly its traffic), and no tenant may live in it: a
    tenant's default-deny policy there would cut the operator itself off."""
    return environ.get(image_catalog.POD_NAMESPACE_ENV, "").strip() or OPERATOR_NAMESPACE

# Well-known ports of the components (containers and Services alike).
POSTGRES_PORT = 5432
POOLER_PORT = 6432
REDIS_PORT = 6379
KAFKA_PORT = 9092
KAFKA_CONTROLLER_PORT = 9093
KONG_PROXY_PORT = 8000
KONG_PROXY_TLS_PORT = 8443
KONG_STATUS_PORT = 8100
CONSUL_HTTP_PORT = 8500
CONSUL_SERVER_PORT = 8300
CONSUL_SERF_LAN_PORT = 8301
DNS_PORT = 53


def selector_labels(t: EffectiveTenant, component: str) -> dict[str, str]:
    """The immutable subset used in selectors: never add to it, or selectors break."""
    return {TENANT_LABEL: t.name, COMPONENT_LABEL: component}


def instance_label(value: str) -> str:
    """``value`` as an app.kubernetes.io/instance label: as it is when it fits, else
    cut and told apart by a digest of the whole. A tenant name of up to 56 with
    "-postgres-replica" (or an app's name of up to 40) made a value the API
    server refused, and with it the child: no read replica, no app, and, from
    "-network", no NetworkPolicy at all (the tenant ran unisolated). A value
    that fits is kept as it was: changing it would roll every pod."""
    return fitted(value, MAX_LABEL_VALUE)


def fitted(value: str, limit: int) -> str:
    """``value`` when it is at most ``limit`` long, else cut and ended by a digest
    of the whole (a distinct value for each, within the limit, still a DNS label
    when ``value`` is one)."""
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    return f"{value[:limit - len(digest) - 1].rstrip('-._')}-{digest}"


def labels(t: EffectiveTenant, component: str) -> dict[str, str]:
    return {
        **selector_labels(t, component),
        NAME_LABEL: component,
        INSTANCE_LABEL: instance_label(f"{t.name}-{component}"),
        MANAGED_BY_LABEL: MANAGED_BY,
        PART_OF_LABEL: PART_OF,
    }


def metadata(t: EffectiveTenant, name: str, component: str) -> dict[str, Any]:
    return {"name": name, "namespace": t.namespace, "labels": labels(t, component)}


def resources(r: Resources) -> dict[str, Any]:
    return {
        "requests": {"cpu": r.cpu_request, "memory": r.memory_request},
        "limits": {"cpu": r.cpu_limit, "memory": r.memory_limit},
    }


def pod_security_context(user_id: int | None) -> dict[str, Any]:
    """Pod-level settings the namespace's Pod Security `restricted` level demands.

    ``user_id=None`` keeps the image's own (non-root) user: tenant app images
    decide their user, and forcing one would break images that own their files.
    """
    if user_id is None:
        return {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    return {
        "runAsNonRoot": True,
        "runAsUser": user_id,
        "runAsGroup": user_id,
        "fsGroup": user_id,
        # The kubelet chowns a volume to fsGroup only when its root is not
        # already the group's: a recursive chown at every mount makes a
        # PostgreSQL data directory group-writable, which the server refuses.
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(*, read_only_root_filesystem: bool = False) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if read_only_root_filesystem:
        ctx["readOnlyRootFilesystem"] = True
    return ctx


def replicas(t: EffectiveTenant, wanted: int) -> int:
    """Suspended tenants run nothing; their volumes and configuration stay."""
    return 0 if t.suspend else wanted


# --------------------------------------------------------------------------- apps

# App pods carry component APP_COMPONENT plus APP_LABEL=<name>, so that an app's
# selector can never match another app's pods, nor Kong's or PostgreSQL's.


def app_selector_labels(t: EffectiveTenant, app: str) -> dict[str, str]:
    return {**selector_labels(t, APP_COMPONENT), APP_LABEL: app}


def app_labels(t: EffectiveTenant, app: str) -> dict[str, str]:
    return {
        **labels(t, APP_COMPONENT),
        NAME_LABEL: app,
        INSTANCE_LABEL: instance_label(f"{t.name}-{app}"),
        APP_LABEL: app,
    }


def app_metadata(t: EffectiveTenant, app: str) -> dict[str, Any]:
    meta = metadata(t, app, APP_COMPONENT)
    meta["labels"] = app_labels(t, app)
    return meta


# --------------------------------------------------------------------------- rendering

# Pod-template annotation holding a digest of the configuration the pods read
# at start-up: a config change rolls the pods, nothing else does.
CONFIG_HASH_ANNOTATION = f"{API_GROUP}/config-hash"
# On the pod template of a component whose open sessions only a restart closes
# (NetworkPolicy keeps established connections on some dataplanes).
ISOLATED_ANNOTATION = f"{API_GROUP}/isolated"


def rfc3339(when: datetime) -> str:
    """UTC with a Z, the fraction kept only when there is one."""
    text = when.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def canonical_json(value: Any) -> str:
    """The one JSON spelling of ``value``: sorted keys, fixed separators."""
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def config_hash(*texts: str) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")  # "ab","c" and "a","bc" must differ
    return digest.hexdigest()


def service_dns(t: EffectiveTenant, service: str) -> str:
    """A Service's name as seen from anywhere in the cluster."""
    return f"{service}.{t.namespace}.svc"


# --------------------------------------------------------------------------- containers


def env(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def secret_env(name: str, secret: str, key: str, *, optional: bool = False) -> dict[str, Any]:
    """A credential reaches a container only this way: never as a literal value.
    ``optional``: the container starts without it when the Secret or key is missing."""
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def field_env(name: str, field_path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}


def container_port(name: str, port: int, protocol: str = "TCP") -> dict[str, Any]:
    return {"name": name, "containerPort": port, "protocol": protocol}


# A container's readiness probe looks every 5-20 s, so a server that answers just
# after a look waits for the next one: at every start of a tenant's database,
# the seconds its pod is not Ready though it could be. A startup probe runs the
# same check every second until it first passes, and the kubelet then runs the
# readiness probe at once instead of at its next period; after that only the
# readiness probe runs, at its own pace.
STARTUP_PROBE_PERIOD_SECONDS = 1
# A startup probe that fails this often kills its container. It stands in for
# readiness only, never for liveness: a server in crash recovery, or replaying
# an archive after a restore, may take hours, and a kill would start that over.
# A week of failures is a bound no start reaches.
STARTUP_PROBE_FAILURES = 7 * 24 * 3600 // STARTUP_PROBE_PERIOD_SECONDS


def startup_probe(readiness: Mapping[str, Any], liveness: Mapping[str, Any] | None = None,
                  ) -> dict[str, Any]:
    """A startup probe with the readiness probe's check, every second (above).

    With the container's ``liveness`` probe, which the kubelet holds back until
    the startup probe first passes, it gives up as late as that one would have
    (its period times its failures) instead of after a week: a container that
    never becomes ready is still restarted when it was before."""
    check = {k: v for k, v in readiness.items()
             if k not in ("periodSeconds", "failureThreshold", "successThreshold",
                          "initialDelaySeconds")}
    failures = STARTUP_PROBE_FAILURES
    if liveness is not None:
        bound = int(liveness.get("periodSeconds", 10)) * int(liveness.get("failureThreshold", 3))
        failures = -(-bound // STARTUP_PROBE_PERIOD_SECONDS)
    return {**check, "periodSeconds": STARTUP_PROBE_PERIOD_SECONDS, "failureThreshold": failures}


def mount(name: str, path: str, *, read_only: bool = False) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "mountPath": path}
    if read_only:
        m["readOnly"] = True
    return m


def empty_dir(name: str) -> dict[str, Any]:
    return {"name": name, "emptyDir": {}}


def config_map_volume(
    name: str, config_map: str, *, mode: int | None = None, keys: Iterable[str] = ()
) -> dict[str, Any]:
    """A ConfigMap as files; ``keys`` limits them to those (each at its own name)."""
    source: dict[str, Any] = {"name": config_map}
    if mode is not None:
        source["defaultMode"] = mode
    items = [{"key": k, "path": k} for k in keys]
    if items:
        source["items"] = items
    return {"name": name, "configMap": source}


def image_pull_secrets() -> dict[str, Any]:
    """The catalog's pull secrets as pod spec fields (none: the field stays unset).

    Every pod the operator creates spreads this in: tenant workloads through
    :func:`pod_spec`, the backup and drill pods, which build their specs themselves.
    """
    secrets = image_catalog.current().pod_pull_secrets()
    return {"imagePullSecrets": secrets} if secrets else {}


def pod_spec(
    *,
    containers: list[dict[str, Any]],
    user_id: int | None,
    volumes: Iterable[dict[str, Any]] = (),
    init_containers: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A restricted pod: no API token and no service-link env vars.

    Service links would inject e.g. KAFKA_PORT=tcp://... into every pod of a
    namespace with a "kafka" Service, which Kafka images read as settings.
    """
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(user_id),
        **image_pull_secrets(),
    }
    inits = list(init_containers)
    if inits:
        spec["initContainers"] = inits
    spec["containers"] = containers
    vols = sorted(volumes, key=lambda v: str(v["name"]))
    if vols:
        spec["volumes"] = vols
    return spec


def pod_template(
    labels_: Mapping[str, str], spec: dict[str, Any], *, config: str | None = None,
    isolated: bool = False,
) -> dict[str, Any]:
    """``isolated``: mark the template while the tenant is isolated, which replaces
    the pods once when isolation starts (and once when it ends)."""
    meta: dict[str, Any] = {"labels": dict(labels_)}
    annotations = {}
    if config is not None:
        annotations[CONFIG_HASH_ANNOTATION] = config
    if isolated:
        annotations[ISOLATED_ANNOTATION] = "true"
    if annotations:
        meta["annotations"] = annotations
    return {"metadata": meta, "spec": spec}


# Nodes are told apart by this label (the kubelet sets it on its own node).
HOSTNAME_TOPOLOGY_KEY = "kubernetes.io/hostname"


def spread_over_nodes(*selectors: Mapping[str, str]) -> dict[str, Any]:
    """A pod's affinity: prefer a node that runs no pod matching ``selectors``.

    Three Consul servers or Kafka controllers on one node lose their quorum with
    that node, and a read replica beside its primary fails with it. Preferred,
    not required: a one-node cluster, or more replicas than nodes, still runs
    every pod (CloudNativePG's default is the same).
    """
    return {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": {
            "labelSelector": {"matchLabels": dict(selector)},
            "topologyKey": HOSTNAME_TOPOLOGY_KEY}}
        for selector in selectors]}}


def _spread(template: dict[str, Any], *selectors: Mapping[str, str]) -> dict[str, Any]:
    return {**template, "spec": {**template["spec"], "affinity": spread_over_nodes(*selectors)}}


# --------------------------------------------------------------------------- objects


def service_port(name: str, port: int, target: int | str | None = None,
                 protocol: str = "TCP") -> dict[str, Any]:
    return {"name": name, "port": port, "targetPort": port if target is None else target,
            "protocol": protocol}


def service(
    t: EffectiveTenant,
    name: str,
    component: str,
    *,
    selector: Mapping[str, str],
    ports: list[dict[str, Any]],
    headless: bool = False,
) -> Manifest:
    spec: dict[str, Any] = {"selector": dict(selector), "ports": ports}
    if headless:
        # Peers must find each other before any of them is Ready (quorum,
        # replication), so the headless Service publishes unready pods too.
        spec["clusterIP"] = "None"
        spec["publishNotReadyAddresses"] = True
    else:
        spec["type"] = "ClusterIP"
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": metadata(t, name, component), "spec": spec}


def config_map(t: EffectiveTenant, name: str, component: str, data: Mapping[str, str]) -> Manifest:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": metadata(t, name, component), "data": dict(sorted(data.items()))}


def volume_claim_template(name: str, storage: str, storage_class: str | None = None
                          ) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": storage}},
    }
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": name}, "spec": spec}


def stateful_set(
    t: EffectiveTenant,
    name: str,
    component: str,
    *,
    replicas_: int,
    service_name: str,
    template: dict[str, Any],
    claims: list[dict[str, Any]],
    parallel: bool = False,
    first_ordinal: int | None = None,
    apart_from: Iterable[Mapping[str, str]] = (),
) -> Manifest:
    """``first_ordinal``: the first pod's number, so its claims' names (written even
    when 0, so that going back to 0 is a change to apply). The pods prefer nodes
    apart from each other and from pods matching ``apart_from``."""
    selector = selector_labels(t, component)
    spec: dict[str, Any] = {
        "replicas": replicas_,
        "serviceName": service_name,
        "selector": {"matchLabels": selector},
        # Quorum members (Kafka, Consul) must all start to elect a leader;
        # OrderedReady would wait for pod 0 to be Ready, which needs a quorum.
        "podManagementPolicy": "Parallel" if parallel else "OrderedReady",
        # The partition written out (0, as the API server would default it had
        # no type been given): with rollingUpdate unset, the StatefulSet
        # controller makes a missing pod whose number is below the status's
        # currentReplicas from the *current* revision, not the new one. A
        # recovery that moves the primary to another pod number (or back) would
        # then start it, once, on the template it is leaving: a restore's pod
        # without the restore, or the old database without archiving.
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        "template": _spread(template, selector, *apart_from),
        "volumeClaimTemplates": claims,
    }
    if first_ordinal is not None:
        spec["ordinals"] = {"start": first_ordinal}
    if claims:
        # Suspending scales to zero and must keep the data: retain the PVCs.
        spec["persistentVolumeClaimRetentionPolicy"] = {
            "whenDeleted": "Retain", "whenScaled": "Retain"}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": metadata(t, name, component), "spec": spec}


def deployment(
    meta: dict[str, Any],
    *,
    replicas_: int | None,
    selector: Mapping[str, str],
    template: dict[str, Any],
) -> Manifest:
    """``replicas_=None`` leaves the count to an HPA (the field is not ours then).
    The pods prefer nodes apart from each other."""
    spec: dict[str, Any] = {}
    if replicas_ is not None:
        spec["replicas"] = replicas_
    spec["selector"] = {"matchLabels": dict(selector)}
    spec["strategy"] = {"type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    spec["template"] = _spread(template, selector)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


# The runners (backups, drills, a recovery's verification) run as this user of
# the operator's image.
RUNNER_UID = 65532


def runner_pod(container: str, args: list[str], variables: list[dict[str, Any]],
               mounts: list[dict[str, Any]], volumes: list[dict[str, Any]], *,
               service_account: str | None = None,
               launcher: list[str] | None = None) -> dict[str, Any]:
    """The pod spec of a runner Job: the operator's own image (it holds the runners),
    run once, its result in the termination message. ``launcher``: the command
    that runs ``stackforge-operator`` (it comes before it; default: none)."""
    spec: dict[str, Any] = {"restartPolicy": "Never"}
    if service_account is not None:
        spec["serviceAccountName"] = service_account
    return {
        **spec,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(RUNNER_UID),
        **image_pull_secrets(),
        "containers": [{
            "name": container,
            "image": image_catalog.current().operator,
            "command": [*(launcher or []), "stackforge-operator"],
            "args": args,
            "env": variables,
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "securityContext": container_security_context(read_only_root_filesystem=True),
            # The runners stream; their memory stays bounded whatever the size.
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                          "limits": {"cpu": "1", "memory": "256Mi"}},
            "volumeMounts": mounts,
        }],
        "volumes": volumes,
    }

