"""The plugin's only module that talks to the Kubernetes API: the kubeconfig
resolved as kubectl does (``--kubeconfig``, else $KUBECONFIG, else ~/.kube/config;
``--context``; the context's namespace), read and write calls, exec."""

from __future__ import annotations

import http.client
import os
import re
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from kubernetes.stream import portforward, stream

from stackforge_operator import API_GROUP, API_VERSION
from stackforge_operator.builders import postgres
from stackforge_operator.builders.common import COMPONENT_LABEL, OPERATOR_NAMESPACE, TENANT_LABEL

Obj = dict[str, Any]
OPERATOR_SELECTOR = "app.kubernetes.io/name=stackforge-operator"
# What a report gathers from the tenant's namespace, beside its own kinds.
BUNDLED_KINDS = (
    ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"), ("v1", "Pod"),
    ("v1", "PersistentVolumeClaim"), ("v1", "ServiceAccount"), ("v1", "ResourceQuota"),
    ("v1", "LimitRange"), ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"),
    ("batch/v1", "Job"), ("batch/v1", "CronJob"), ("networking.k8s.io/v1", "NetworkPolicy"),
    ("policy/v1", "PodDisruptionBudget"), ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("rbac.authorization.k8s.io/v1", "Role"), ("rbac.authorization.k8s.io/v1", "RoleBinding"),
)


# One API request may take this long: a stalled connection hung every command,
# past its own --timeout (the client sets none by default).
REQUEST_TIMEOUT_SECONDS = 30.0


class NotFoundError(Exception):
    pass


def _bounded(api: client.ApiClient, seconds: float) -> None:
    """Every request of ``api`` without a timeout of its own gets ``seconds``."""
    rest = api.rest_client
    request: Callable[..., Any] = rest.request

    def bounded(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = seconds
        return request(*args, **kwargs)

    setattr(rest, "request", bounded)  # noqa: B010 - an instance's method, replaced


class ProbeError(Exception):
    """A pod's port that gave no HTTP answer (nothing listening, no answer in time)."""


def only_tenant(tenants: list[Obj], name: str, namespace: str | None) -> Obj:
    """The one tenant of that name among ``tenants``. The operator runs only one
    tenant of a name (a later namesake stalls ``TenantNameTaken``) but the API
    server keeps both, sorted by namespace: picking the first would isolate,
    restore into or report on the namesake. Several: the user says which."""
    found = [t for t in tenants if t["metadata"]["name"] == name]
    if not found:
        where = f"namespace {namespace}" if namespace else "any namespace"
        raise NotFoundError(f"no StackForgeTenant {name} in {where}")
    if len(found) > 1:
        where = ", ".join(sorted(str(t["metadata"]["namespace"]) for t in found))
        raise NotFoundError(f"StackForgeTenant {name} is in more than one namespace "
                            f"({where}): say which with --namespace")
    return found[0]


def names_tenant(line: str, name: str, namespace: str) -> bool:
    """Whether an operator log line is about the tenant: its key or its namespace as
    whole words, not as part of another's (``acme`` in ``acme-eu``): a report goes
    to people the other tenants' lines are not for."""
    return any(re.search(rf"(?<![\w.-]){re.escape(word)}(?![\w-]|\.[\w-])", line)
               for word in (name, namespace))


class Cluster:
    def __init__(self, kubeconfig: str | None, context: str | None,
                 namespace: str | None) -> None:
        # $KUBECONFIG read now (the client reads it at import): kubectl passes its
        # --kubeconfig to a plugin only so, as flags may not precede a plugin's name.
        self.api = config.new_client_from_config(
            config_file=kubeconfig or os.environ.get("KUBECONFIG") or None, context=context)
        _bounded(self.api, REQUEST_TIMEOUT_SECONDS)
        self.dynamic = DynamicClient(self.api)  # (its discovery is a request too)
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)

    def _list(self, plural: str, namespace: str | None = None) -> list[Obj]:
        found: Any
        if namespace is None:
            found = self.custom.list_cluster_custom_object(API_GROUP, API_VERSION, plural)
        else:
            found = self.custom.list_namespaced_custom_object(API_GROUP, API_VERSION,
                                                              namespace, plural)
        items: list[Obj] = found.get("items") or []
        return items

    def tenants(self) -> list[Obj]:
        return self._list("stackforgetenants", self.namespace)

    def tenant(self, name: str) -> Obj:
        """The tenant of that name: in ``--namespace`` when given, else wherever it is."""
        return only_tenant(self.tenants(), name, self.namespace)

    def of_tenant(self, plural: str, tenant: Obj) -> list[Obj]:
        """The tenant's BackupPolicies or DRDrills (those whose tenantRef names it)."""
        return [o for o in self._list(plural, tenant["metadata"]["namespace"])
                if ((o.get("spec") or {}).get("tenantRef") or {}).get("name")
                == tenant["metadata"]["name"]]

    def patch_tenant(self, tenant: Obj, patch: Obj) -> Obj:
        meta = tenant["metadata"]
        patched: Any = self.custom.patch_namespaced_custom_object(
            API_GROUP, API_VERSION, meta["namespace"], "stackforgetenants", meta["name"], patch)
        return dict(patched)

    def annotate(self, plural: str, obj: Obj, annotations: dict[str, str]) -> None:
        meta = obj["metadata"]
        self.custom.patch_namespaced_custom_object(
            API_GROUP, API_VERSION, meta["namespace"], plural, meta["name"],
            {"metadata": {"annotations": annotations}})

    def create_drill(self, namespace: str, body: Obj) -> None:
        self.custom.create_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, "drdrills",
            {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "DRDrill", **body})

    def _get(self, plural: str, namespace: str, name: str) -> Obj:
        found: Any = self.custom.get_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, plural, name)
        return dict(found)

    def drill(self, namespace: str, name: str) -> Obj:
        return self._get("drdrills", namespace, name)

    def policy(self, namespace: str, name: str) -> Obj:
        return self._get("backuppolicies", namespace, name)

    def _objects(self, api_version: str, kind: str, namespace: str,
                 selector: str | None = None) -> list[Obj]:
        resource = self.dynamic.resources.get(api_version=api_version, kind=kind)
        found = resource.get(namespace=namespace, label_selector=selector or "").to_dict()
        return [{"apiVersion": api_version, "kind": kind, **item}
                for item in found.get("items") or []]

    def pods(self, namespace: str, selector: str) -> list[Obj]:
        return self._objects("v1", "Pod", namespace, selector)

    def namespace_objects(self, namespace: str) -> list[Obj]:
        """Every object of BUNDLED_KINDS and the operator's kinds in ``namespace``
        (a kind the cluster lacks, or the caller may not list, is left out)."""
        out: list[Obj] = []
        for api_version, kind in BUNDLED_KINDS:
            try:
                out += self._objects(api_version, kind, namespace)
            except (ApiException, ResourceNotFoundError):
                continue
        for plural, kind in (("stackforgetenants", "StackForgeTenant"),
                             ("backuppolicies", "BackupPolicy"), ("drdrills", "DRDrill")):
            out += [{"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": kind, **item}
                    for item in self._list(plural, namespace)]
        return out

    def jobs(self, namespace: str, selector: str) -> list[Obj]:
        return self._objects("batch/v1", "Job", namespace, selector)

    def events(self, namespace: str) -> list[Obj]:
        return self._objects("v1", "Event", namespace)

    def pod_log(self, namespace: str, pod: str, container: str, tail: int) -> str:
        try:
            text: Any = self.core.read_namespaced_pod_log(pod, namespace, container=container,
                                                          tail_lines=tail)
        except ApiException as error:
            return f"(no log: {error.status} {error.reason})\n"
        return str(text)

    def operator_log_lines(self, tenant: Obj, tail: int,
                           operator_namespace: str = OPERATOR_NAMESPACE) -> dict[str, str]:
        """The lines naming the tenant (its name or namespace) of the operator's pods
        in ``operator_namespace``."""
        name, namespace = tenant["metadata"]["name"], tenant["metadata"]["namespace"]
        try:
            pods = self.pods(operator_namespace, OPERATOR_SELECTOR)
        except ApiException:
            return {}
        out = {}
        for pod in pods:
            pod_name = str(pod["metadata"]["name"])
            text = self.pod_log(operator_namespace, pod_name, "operator", 20 * tail)
            lines = [line for line in text.splitlines() if names_tenant(line, name, namespace)]
            out[pod_name] = "\n".join(lines[-tail:]) + "\n"
        return out

    def postgres_pod(self, tenant: Obj, replica: bool) -> str:
        """A running pod of the tenant's primary (or of a read replica)."""
        component = postgres.REPLICA_COMPONENT if replica else postgres.COMPONENT
        pods = self.pods(tenant["metadata"]["namespace"],
                          f"{TENANT_LABEL}={tenant['metadata']['name']},"
                          f"{COMPONENT_LABEL}={component}")
        running = sorted(str(p["metadata"]["name"]) for p in pods
                         if (p.get("status") or {}).get("phase") == "Running")
        if not running:
            raise NotFoundError(f"no running {component} pod of tenant "
                                f"{tenant['metadata']['name']}")
        return running[0]

    def wanted_replicas(self, namespace: str, selector: str) -> int | None:
        """The replicas the StatefulSets and Deployments matching ``selector`` want
        together; None when there is none (the component is not deployed)."""
        found = (self._objects("apps/v1", "StatefulSet", namespace, selector)
                 + self._objects("apps/v1", "Deployment", namespace, selector))
        if not found:
            return None
        return sum(int((w.get("spec") or {}).get("replicas") or 0) for w in found)

    def exec(self, namespace: str, pod: str, container: str, command: list[str],
             timeout: float | None = None) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) of ``command`` in the container; 124 (as
        timeout(1) says it) when it has not ended within ``timeout`` seconds."""
        response = stream(self.core.connect_get_namespaced_pod_exec, pod, namespace,
                          container=container, command=command, stdin=False, stdout=True,
                          stderr=True, tty=False, _preload_content=False)
        deadline = None if timeout is None else time.monotonic() + timeout
        out: list[str] = []
        err: list[str] = []
        while response.is_open():
            if deadline is not None and time.monotonic() > deadline:
                response.close()
                return 124, "".join(out), "".join(err) + f"no answer within {timeout:.0f} s\n"
            response.update(timeout=1)
            if response.peek_stdout():
                out.append(response.read_stdout())
            if response.peek_stderr():
                err.append(response.read_stderr())
        response.close()
        code = response.returncode
        return (code if code is not None else 1), "".join(out), "".join(err)

    def http_get(self, namespace: str, pod: str, port: int, path: str,
                 timeout: float = 10) -> tuple[int, str]:
        """(status, body) of GET ``path`` on the pod's own port, through a
        port-forward: it enters the pod's network namespace as kubectl
        port-forward does, so neither the tenant's NetworkPolicies nor the route
        from here to the pod network decide the answer -- the pod does."""
        forward = portforward(self.core.connect_get_namespaced_pod_portforward, pod,
                              namespace, ports=str(port))
        connection = forward.socket(port)
        connection.settimeout(timeout)
        try:
            connection.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\n"
                               "User-Agent: kubectl-stackforge\r\nConnection: close\r\n\r\n"
                               .encode())
            answer = http.client.HTTPResponse(connection)
            try:
                answer.begin()
                body = answer.read().decode(errors="replace")
            except (http.client.HTTPException, OSError) as error:
                refused = forward.error(port)
                raise ProbeError((refused or "").strip() or
                                 f"no HTTP answer on port {port}: {type(error).__name__}"
                                 ) from None
            return answer.status, body
        finally:
            forward.close()
