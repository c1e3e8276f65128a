"""The plugin's choice of tenant and of the operator's lines about it."""

from __future__ import annotations

from typing import Any

import pytest

from stackforge_operator.plugin.api import NotFoundError, names_tenant, only_tenant


def tenant(namespace: str, name: str) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name}}


def test_the_one_tenant_of_the_name() -> None:
    listed = [tenant("acme-dev", "acme-eu"), tenant("tenants", "acme")]
    assert only_tenant(listed, "acme", None)["metadata"]["namespace"] == "tenants"


def test_namesakes_in_two_namespaces_are_refused_with_both_named() -> None:
    """The API server lists by namespace: the first of two was a namesake that the
    operator stalls (TenantNameTaken), and `isolate acme` isolated it instead."""
    listed = [tenant("acme-dev", "acme"), tenant("tenants", "acme")]
    with pytest.raises(NotFoundError, match=r"\(acme-dev, tenants\): say which with --namespace"):
        only_tenant(listed, "acme", None)


def test_none_of_the_name() -> None:
    with pytest.raises(NotFoundError, match="no StackForgeTenant acme in namespace tenants"):
        only_tenant([tenant("tenants", "acme-eu")], "acme", "tenants")


@pytest.mark.parametrize(("line", "about"), [
    ("tenant acme: applied ['Namespace/tenant-acme']; pruned []", True),
    ("reconciled tenant-acme/acme in 0.1s", True),
    ("backup of tenant acme.", True),
    ("tenant acme-eu: applied ['Namespace/tenant-acme-eu']", False),
    ("reconciled tenants/acme2 in 0.1s", False),
    ("bucket stackforge-acme.example/backups", False),
])
def test_operator_lines_about_the_tenant_only(line: str, about: bool) -> None:
    assert names_tenant(line, "acme", "tenant-acme") is about
