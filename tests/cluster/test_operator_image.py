"""One operator image, through the API server: the chart's Deployment pulls the operator
from a mirror, the operator finds that image in its own Pod at start-up, and the runner
Jobs run it too.

The Pod is real: the chart's pod template, created in the operator's namespace (Pod
Security "restricted" enforced) and read back by handlers.adopt_own_image() as the
operator's ServiceAccount, with the shipped RBAC. What the chart and manifests/ render
without a cluster is tests/unit/test_operator_image.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from stackforge_operator import handlers
from tests.support.helm import only, template
from tests.unit.builders.runners import runner_images
from tests.unit.builders.tenants import tenant

pytestmark = pytest.mark.usefixtures("kube_as_operator", "default_image_catalog")


def test_runner_jobs_follow_the_deployment_wherever_it_pulls_from(
    own_pod: Callable[[Mapping[str, Any]], str],
) -> None:
    # A user points the chart at a mirror.
    repository = "mirror.example.internal:5000/team/stackforge/stackforge-operator"
    docs = template(values={"image.repository": repository, "image.tag": "0.1.0-rc1"})
    spec = only(docs, "Deployment")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    # One of its pods, with the downward API's POD_NAME and POD_NAMESPACE.
    own_pod(spec)
    assert runner_images(tenant()) != {f"{repository}:0.1.0-rc1"}

    handlers.adopt_own_image()
    assert runner_images(tenant()) == {f"{repository}:0.1.0-rc1"}
