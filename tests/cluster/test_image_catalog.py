"""image_catalog.py's own-pod lookup against the API server: handlers.adopt_own_image()
reads the operator's real Pod (named by POD_NAME and POD_NAMESPACE, as the Deployment's
downward API names it) as the operator's ServiceAccount, so the shipped RBAC must allow it.

The Pods are created in the operator's namespace, where Pod Security "restricted" is
enforced; the nodes are kwok's, so nothing runs. What needs no cluster (the settings,
the catalog file, a pinned image or no pod at all reading nothing) is
tests/unit/test_image_catalog.py.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from stackforge_operator import handlers, image_catalog
from stackforge_operator.version import VERSION
from tests.support.operator_identity import OperatorIdentity

pytestmark = pytest.mark.usefixtures("default_image_catalog")

MIRROR = "mirror.example.internal:5000/team"
DEFAULT = f"stackforge/stackforge-operator:{VERSION}"

OwnPod = Callable[[Mapping[str, Any]], str]


def _spec(**images: str) -> dict[str, Any]:
    """A pod spec of these containers (name=image) that Pod Security "restricted" admits."""
    hardened = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    return {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": name, "image": image, "securityContext": hardened}
                       for name, image in images.items()],
    }


def test_the_operator_adopts_its_own_image(
    kube_as_operator: OperatorIdentity, own_pod: OwnPod,
) -> None:
    image = f"{MIRROR}/stackforge/stackforge-operator:0.1.0"
    own_pod(_spec(sidecar="other:1", operator=image))

    handlers.adopt_own_image()

    # The Pod was read (as the operator's ServiceAccount: the shipped RBAC allows it),
    # and its operator container's image is what the Jobs use, as the pod spec names
    # it: no prefix added, nothing normalised, the sidecar's ignored. (No count of the
    # API server's GETs on pods: its garbage collector reads pods of other tests'
    # namespaces at any time.)
    assert image_catalog.current().operator == image


def test_a_pod_without_the_container_keeps_the_default(
    kube_as_operator: OperatorIdentity, own_pod: OwnPod, caplog: pytest.LogCaptureFixture,
) -> None:
    name = own_pod(_spec(sidecar="other:1"))
    with caplog.at_level(logging.WARNING):
        handlers.adopt_own_image()
    assert image_catalog.current().operator == DEFAULT
    assert f"no container 'operator' in my pod {kube_as_operator.namespace}/{name}" in (
        caplog.text)


def test_a_missing_pod_keeps_the_default(
    kube_as_operator: OperatorIdentity, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # POD_NAME names no Pod (deleted, or a wrong downward API field): read, not found.
    name = f"stackforge-operator-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("POD_NAME", name)
    monkeypatch.setenv("POD_NAMESPACE", kube_as_operator.namespace)
    with caplog.at_level(logging.WARNING):
        handlers.adopt_own_image()
    assert image_catalog.current().operator == DEFAULT
    assert f"no container 'operator' in my pod {kube_as_operator.namespace}/{name}" in (
        caplog.text)
