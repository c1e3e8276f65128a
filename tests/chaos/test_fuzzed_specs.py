"""Fuzzed objects against the real API server (issue #17, case 7).

Hypothesis breaks the examples of each kind (``examples/``) in a few places at
once: a value replaced by one of another type or out of range, a field
removed, an unknown one added. 500 objects per kind go to the API server as a
server-side dry run with strict field validation (admission and schema run,
nothing is stored):

- every object it refuses is refused naming a field (a path below ``spec``
  or ``metadata``), so a user learns what to fix;
- every object it admits goes through the operator's own reading of it (the
  pydantic models, then the builders of what it would create): no exception;
  and the API server takes each child built (a server-side dry run of its
  apply): what the schema admits, the children's kinds admit too;
- and every admitted one is created for real and reconciled by the operator,
  each ending Ready, Reconciling or Stalled with a reason, with no traceback
  in the operator's log.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from stackforge_operator import API_GROUP, API_VERSION, FIELD_MANAGER, kube
from stackforge_operator.builders import stack
from stackforge_operator.devcluster import LocalCluster
from stackforge_operator.devcluster.operator_process import OperatorProcess
from stackforge_operator.models.backup import BackupPolicySpec
from stackforge_operator.models.drill import DRDrillSpec
from stackforge_operator.models.effective import resolve
from stackforge_operator.models.tenant import StackForgeTenantSpec
from tests.support import tenants
from tests.support.clusters import ClusterHandle
from tests.support.operator_identity import OperatorIdentity

pytestmark = pytest.mark.chaos

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Tenants last: each kind's operator also reconciles what the kinds before it
# left (nothing is deleted: the module's control plane goes as a whole), and
# policies and drills without their tenant are cheap to go over again.
KINDS = {"DRDrill": ("drdrills", "drdrill-acme.yaml"),
         "BackupPolicy": ("backuppolicies", "backuppolicy-acme.yaml"),
         "StackForgeTenant": ("stackforgetenants", "tenant-acme.yaml")}
PER_KIND = 500
# No nodes: what is tested is the operator's reading of what the API server
# admits, and every admitted tenant ends with a reason either way (its pods
# Pending: ComponentsNotReady). With kwok's nodes, scheduling and running the
# pods of a hundred full-stack tenants made this the suite's longest test.
FAULTY_CLUSTER_NODES = 0
NAMESPACE = "tenant-fuzz"
# A refusal names the field: "spec.components.apps[0].port: Invalid value ...".
FIELD_PATH = re.compile(r"\b(spec|metadata)[.[]")

_scalars = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40), st.booleans(), st.none(),
    st.text(max_size=70), st.sampled_from(["", "0", "-1", "1Gi", "* * * * *", "Postgres",
                                           "a" * 300, "10.0.0.0/8", "https://x.example"]),
    st.floats(allow_nan=False, allow_infinity=False))
_values = st.one_of(_scalars, st.lists(_scalars, max_size=3),
                    st.dictionaries(st.text(min_size=1, max_size=12), _scalars, max_size=3))


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``obj``, containers included."""
    found = [prefix] if prefix else []
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def broken(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    """The example of ``kind`` with one to three things broken in its spec."""
    obj: dict[str, Any] = yaml.safe_load((EXAMPLES / KINDS[kind][1]).read_text())
    obj["metadata"] = {"name": "fuzz", "namespace": NAMESPACE}
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(_paths(obj["spec"]) or [()]))
        parent: Any = obj["spec"]
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if not path or action == "add":
            target = parent[path[-1]] if path else obj["spec"]
            if isinstance(target, dict):
                target[draw(st.text(min_size=1, max_size=12))] = draw(_values)
            continue
        if action == "delete":
            if isinstance(parent, dict):
                del parent[path[-1]]
            elif len(parent) > 1:
                parent.pop(path[-1])
            continue
        parent[path[-1]] = draw(_values)
    return obj


def _dry_run(cluster: ClusterHandle, kind: str, obj: dict[str, Any]) -> dict[str, Any] | str:
    """The object as the API server would store it (defaulted, nulls pruned: what
    the operator reads), or the message it refuses ``obj`` with."""
    try:
        stored = client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
            API_GROUP, API_VERSION, NAMESPACE, KINDS[kind][0], obj, dry_run="All",
            field_validation="Strict")
    except ApiException as error:
        if error.status not in (400, 422):
            raise
        return str(json.loads(error.body or "{}").get("message") or error.body)
    assert isinstance(stored, dict)  # the client types a custom object as a bare object
    return stored


def _read_as_the_operator(kind: str, obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The operator's reading of an admitted object: its model and what it builds."""
    spec = obj.get("spec") or {}
    if kind == "StackForgeTenant":
        t = resolve("fuzz", StackForgeTenantSpec.model_validate(spec), namespace=NAMESPACE)
        return stack.desired_children(t, secrets=[], tls=None, rotation=None)
    if kind == "BackupPolicy":
        BackupPolicySpec.model_validate(spec)
    else:
        DRDrillSpec.model_validate(spec)
    return []


def _refusal_of(api: DynamicClient, child: dict[str, Any]) -> str | None:
    """What the API server says to ``child`` applied as the operator applies it (a
    server-side dry run), or None when it would take it."""
    try:
        resource = api.resources.get(api_version=child["apiVersion"], kind=child["kind"])
        api.server_side_apply(
            resource, body=kube.apply_body(child), name=child["metadata"]["name"],
            namespace=child["metadata"].get("namespace"), field_manager=FIELD_MANAGER,
            force_conflicts=True, dry_run="All")
    except ApiException as error:
        if error.status not in (400, 422):
            raise
        return f"{child['kind']}/{child['metadata']['name']}: {error.body}"
    return None


def _why_unsettled(api: client.CustomObjectsApi, kind: str, namespace: str, name: str,
                   log_path: Path) -> str:
    """What a failure says about an object that never settled: its status and the
    operator's log lines that name it."""
    found = api.get_namespaced_custom_object(API_GROUP, API_VERSION, namespace,
                                             KINDS[kind][0], name)
    assert isinstance(found, dict)  # the client types a custom object as a bare object
    lines = [line for line in log_path.read_text(errors="replace").splitlines()
             if f"{namespace}/{name}" in line or f" {name}:" in line or f" {name} " in line]
    return (f"{kind} {namespace}/{name} has no Ready condition with a reason after 120 s; "
            f"its status: {json.dumps(found.get('status'))}; the operator's last lines "
            f"about it:\n" + "\n".join(lines[-30:]))


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_fuzzed_object_is_refused_naming_a_field_or_read_without_error(
        faulty_cluster: tuple[LocalCluster, ClusterHandle, OperatorIdentity], kind: str,
        tmp_path: Path, record_property: Callable[[str, object], None]) -> None:
    _, cluster, identity = faulty_cluster
    tenants.ensure_namespace(cluster, NAMESPACE)
    refused: list[str] = []
    admitted: list[dict[str, Any]] = []
    nameless: list[tuple[dict[str, Any], str]] = []
    children_asked: set[str] = set()
    children_api = DynamicClient(cluster.api)
    refused_children: list[str] = []

    @settings(max_examples=PER_KIND, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(broken(kind))
    def check(obj: dict[str, Any]) -> None:
        answer = _dry_run(cluster, kind, obj)
        if isinstance(answer, dict):
            # Raises on the operator's error.
            for child in _read_as_the_operator(kind, answer):
                # What the schema admits, the children's kinds take too (a volume of
                # size 0 did not); each distinct child is asked once.
                as_text = json.dumps(child, sort_keys=True)
                if as_text not in children_asked:
                    children_asked.add(as_text)
                    if (refusal := _refusal_of(children_api, child)) is not None:
                        refused_children.append(refusal)
            admitted.append(copy.deepcopy(obj))
        elif FIELD_PATH.search(answer):
            refused.append(answer)
        else:
            nameless.append((obj, answer))

    check()
    assert nameless == [], f"{len(nameless)} refusals name no field, e.g. {nameless[:3]}"
    assert refused_children == [], refused_children[:3]
    assert len(refused) + len(admitted) >= PER_KIND * 0.9  # hypothesis drops duplicates
    assert refused and admitted, (len(refused), len(admitted))

    # Every admitted one, reconciled for real by the operator.
    api = client.CustomObjectsApi(cluster.api)
    operator = OperatorProcess(identity.kubeconfig, tmp_path / "operator.log",
                               extra_args=("--verbose",),
                               extra_env={"STACKFORGE_RESYNC_SECONDS": "5"})
    operator.start()
    created: list[tuple[str, str]] = []
    try:
        for index, obj in enumerate(admitted):
            namespace = f"fuzz-{kind.lower()[:6]}-{index}"
            tenants.ensure_namespace(cluster, namespace)
            obj = {**obj, "metadata": {"name": f"fuzz-{index}", "namespace": namespace}}
            api.create_namespaced_custom_object(API_GROUP, API_VERSION, namespace,
                                                KINDS[kind][0], obj)
            created.append((namespace, f"fuzz-{index}"))

        def settled(namespace: str, name: str) -> dict[str, Any] | None:
            found = api.get_namespaced_custom_object(API_GROUP, API_VERSION, namespace,
                                                     KINDS[kind][0], name)
            assert isinstance(found, dict)  # the client types a custom object as a bare object
            ready = next((c for c in (found.get("status") or {}).get("conditions") or []
                          if c["type"] == "Ready"), None)
            return ready if ready and ready.get("reason") else None

        outcomes = []
        for ns, n in created:
            try:
                ready = tenants.eventually(functools.partial(settled, ns, n), timeout=120,
                                           interval=1)
            except AssertionError:
                pytest.fail(_why_unsettled(api, kind, ns, n, tmp_path / "operator.log"))
            outcomes.append(ready["reason"])
        log = (tmp_path / "operator.log").read_text()
        assert "Traceback" not in log and "failed unexpectedly" not in log, log[-3000:]
        assert operator.process.running()
    finally:
        operator.stop()
    record_property("chaos", f"{kind}: {len(refused)} refused naming a field, "
                             f"{len(admitted)} admitted and read without error; "
                             f"{len(created)} reconciled, reasons {sorted(set(outcomes))}")
