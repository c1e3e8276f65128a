"""The tenant-namespace admission policy's CEL, evaluated offline (cel-python for cel-go)
against its Python twin, models.tenant.reserved_namespace."""

from __future__ import annotations

from typing import Any

import celpy
import pytest
from celpy.adapter import json_to_cel

from stackforge_operator import admission
from stackforge_operator.models.tenant import reserved_namespace

NAMESPACES = ["default", "stackforge-system", "kube-system", "kube-public", "kube-node-lease",
              "tenant-acme", "acme", "kubeflow", "defaults", "stackforge-system-2", "kube"]


def _evaluate(expression: str, namespace: str, name: str = "acme") -> Any:
    env = celpy.Environment()
    program = env.program(env.compile(expression))
    return program.evaluate({
        "request": json_to_cel({"namespace": namespace, "operation": "CREATE"}),
        "object": json_to_cel({"metadata": {"name": name, "namespace": namespace}}),
    })


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_policy_admits_exactly_where_the_operator_would_build(namespace: str) -> None:
    assert bool(_evaluate(admission.NAMESPACE_ALLOWED, namespace)) is not reserved_namespace(
        namespace)


def test_refusal_names_the_tenant_and_the_namespace() -> None:
    message = str(_evaluate(admission.MESSAGE, "kube-system", name="intruder"))
    assert message.startswith("StackForgeTenant intruder: namespace kube-system is reserved")
    assert "not default, stackforge-system or kube-*" in message


def test_only_creation_of_tenants_is_checked() -> None:
    rule = admission.policy_spec()["matchConstraints"]["resourceRules"]
    assert rule == [{"apiGroups": ["stackforge.io"], "apiVersions": ["*"],
                     "operations": ["CREATE"], "resources": ["stackforgetenants"]}]
    assert admission.binding_spec("p") == {"policyName": "p", "validationActions": ["Deny"]}
