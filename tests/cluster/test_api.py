"""The CRDs on the real API server: admission, kubectl explain, printer columns, examples."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stackforge_operator import API_GROUP, API_VERSION
from tests.cluster.admission_cases import (
    ACCEPTED_UPDATES,
    CASES,
    SERVER_DEFAULTED_UPDATE_CASES,
    UPDATE_CASES,
    Case,
    UpdateCase,
    example,
)
from tests.support.clusters import ClusterHandle
from tests.support.tenants import eventually

PLURALS = {
    "StackForgeTenant": "stackforgetenants",
    "BackupPolicy": "backuppolicies",
    "DRDrill": "drdrills",
}
pytestmark = pytest.mark.usefixtures("stackforge_crds")
ADMISSION_POLICY = Path(__file__).resolve().parents[2] / "manifests" / "admissionpolicy.yaml"


def _create(cluster: ClusterHandle, manifest: dict[str, Any], namespace: str) -> Any:
    objects = client.CustomObjectsApi(cluster.api)
    plural = PLURALS[manifest["kind"]]
    manifest["metadata"]["namespace"] = namespace
    return objects.create_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, plural, manifest, field_validation="Strict"
    )


def _replace(cluster: ClusterHandle, manifest: dict[str, Any], namespace: str) -> Any:
    objects = client.CustomObjectsApi(cluster.api)
    plural = PLURALS[manifest["kind"]]
    name = manifest["metadata"]["name"]
    manifest["metadata"]["namespace"] = namespace
    live = objects.get_namespaced_custom_object(API_GROUP, API_VERSION, namespace, plural, name)
    assert isinstance(live, dict)  # the client types a custom object as a bare object
    manifest["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
    return objects.replace_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, plural, name, manifest, field_validation="Strict"
    )


@pytest.mark.parametrize("case", CASES, ids=[f"{c.kind}-{c.id}" for c in CASES])
def test_malformed_object_is_refused_at_admission_naming_the_field(
    cluster: ClusterHandle, namespace: str, case: Case
) -> None:
    manifest = copy.deepcopy(case.manifest)
    with pytest.raises(ApiException) as refused:
        _create(cluster, manifest, namespace)
    assert refused.value.status == 422 or (case.strict and refused.value.status == 400), (
        refused.value.body
    )
    assert refused.value.body is not None  # the API server's response
    assert case.expect in refused.value.body


REFUSED_UPDATES = [*UPDATE_CASES, *SERVER_DEFAULTED_UPDATE_CASES]


@pytest.mark.parametrize("case", REFUSED_UPDATES,
                         ids=[f"{c.kind}-{c.id}" for c in REFUSED_UPDATES])
def test_forbidden_change_is_refused(
    cluster: ClusterHandle, namespace: str, case: UpdateCase
) -> None:
    original = copy.deepcopy(case.original)
    _create(cluster, original, namespace)
    with pytest.raises(ApiException) as refused:
        _replace(cluster, copy.deepcopy(case.modified), namespace)
    assert refused.value.status == 422
    assert refused.value.body is not None  # the API server's response
    assert case.expect in refused.value.body


@pytest.mark.parametrize(
    "case", ACCEPTED_UPDATES, ids=[f"{c.kind}-{c.id}" for c in ACCEPTED_UPDATES]
)
def test_legitimate_change_is_accepted(
    cluster: ClusterHandle, namespace: str, case: UpdateCase
) -> None:
    original = copy.deepcopy(case.original)
    _create(cluster, original, namespace)
    replaced = _replace(cluster, copy.deepcopy(case.modified), namespace)
    # Stored as sent (Strict field validation refuses unknown fields; nothing
    # dropped on the way): the API server's defaults may only add to it.
    assert _holds(replaced["spec"], case.modified["spec"]), replaced["spec"]


def _holds(stored: Any, sent: Any) -> bool:
    """Whether ``stored`` has everything ``sent`` has (defaults may add to it)."""
    if isinstance(sent, dict):
        return isinstance(stored, dict) and all(
            _holds(stored.get(key), value) for key, value in sent.items())
    if isinstance(sent, list):
        return isinstance(stored, list) and len(stored) == len(sent) and all(
            _holds(a, b) for a, b in zip(stored, sent, strict=True))
    return bool(stored == sent)


def test_examples_are_accepted_and_shown_with_printer_columns(
    cluster: ClusterHandle, namespace: str
) -> None:
    for kind in PLURALS:
        manifest = example(kind)
        if kind == "StackForgeTenant":
            manifest["metadata"]["name"] = "acme-api-test"
        _create(cluster, manifest, namespace)

    tenants = cluster.kubectl("get", "sft", "acme-api-test", "-n", namespace).stdout.splitlines()
    assert tenants[0].split() == [
        "NAME", "TIER", "READY", "REASON", "COMPONENTS", "LAST", "BACKUP", "LAST", "DRILL", "AGE"
    ]
    assert tenants[1].split()[:2] == ["acme-api-test", "Growth"]

    policies = cluster.kubectl("get", "sfbp", "-n", namespace).stdout.splitlines()
    assert policies[0].split()[:4] == ["NAME", "TENANT", "SCHEDULE", "READY"]
    drills = cluster.kubectl("get", "sfdr", "-n", namespace).stdout.splitlines()
    assert drills[0].split()[:2] == ["NAME", "TENANT"]
    assert len(drills) == 2

    # The category lists all three kinds at once.
    everything = cluster.kubectl("get", "stackforge", "-A", "-o", "name").stdout.split()
    assert f"stackforgetenant.{API_GROUP}/acme-api-test" in everything
    assert any(n.startswith(f"backuppolicy.{API_GROUP}/") for n in everything)
    assert any(n.startswith(f"drdrill.{API_GROUP}/") for n in everything)


@pytest.mark.parametrize(
    ("resource", "field", "words"),
    [
        ("sft", "spec.tier", "Service tier"),
        ("sft", "spec.components.postgres.readReplicas", "read replicas"),
        ("sfbp", "spec.schedule", "Cron"),
        ("sfdr", "spec.objectives", "RTO"),
        ("sft", "status.conditions", "Ready"),
    ],
)
def test_kubectl_explain_shows_field_descriptions(
    cluster: ClusterHandle, stackforge_crds: list[str], resource: str, field: str, words: str
) -> None:
    # kubectl's discovery cache may predate the CRDs (a call earlier in the
    # session): api-resources reads discovery afresh and rewrites it.
    cluster.kubectl("api-resources", "--api-group=stackforge.io")
    explained = cluster.kubectl("explain", f"{resource}.{field}").stdout
    assert "DESCRIPTION" in explained or "FIELD" in explained
    assert words.lower() in explained.lower(), explained


def test_every_crd_has_status_subresource_short_name_and_category(
    cluster: ClusterHandle, stackforge_crds: list[str]
) -> None:
    extensions = client.ApiextensionsV1Api(cluster.api)
    short_names: set[str] = set()
    for name in stackforge_crds:
        crd = extensions.read_custom_resource_definition(name)
        version = crd.spec.versions[0]
        assert version.subresources is not None and version.subresources.status is not None
        assert "stackforge" in (crd.spec.names.categories or [])
        assert crd.spec.names.short_names is not None
        short_names.update(crd.spec.names.short_names)
        assert version.additional_printer_columns is not None
        columns = [c.name for c in version.additional_printer_columns]
        assert {"Ready", "Reason"} <= set(columns)
    assert short_names == {"sft", "sfbp", "sfdr"}


def _created_or_refused(cluster: ClusterHandle, name: str, namespace: str) -> str | None:
    """Create a tenant: the refusal's body, or None once it was admitted (then deleted again)."""
    manifest = example("StackForgeTenant")
    manifest["metadata"]["name"] = name
    try:
        _create(cluster, manifest, namespace)
    except ApiException as error:
        assert error.status == 403, error.body
        return str(error.body)
    client.CustomObjectsApi(cluster.api).delete_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, PLURALS["StackForgeTenant"], name)
    return None


def test_admission_policy_refuses_a_tenant_in_a_reserved_namespace(
    cluster: ClusterHandle, namespace: str
) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(ADMISSION_POLICY))
    try:
        # The API server compiles a new policy within a second or so.
        refused = eventually(lambda: _created_or_refused(cluster, "intruder", "kube-public"),
                             timeout=30)
        assert ("StackForgeTenant intruder: namespace kube-public is reserved; put the tenant "
                "in a namespace of its own") in refused
        assert _created_or_refused(cluster, "intruder", "default") is not None
        # A namespace of its own is admitted; updates are not checked again.
        manifest = example("StackForgeTenant")
        _create(cluster, manifest, namespace)
        _replace(cluster, example("StackForgeTenant"), namespace)
    finally:
        cluster.kubectl("delete", "-f", str(ADMISSION_POLICY))
    # Gone for the tests after this one (test_tenant shows the operator's own refusal).
    eventually(lambda: _created_or_refused(cluster, "probe", "default") is None, timeout=30)
