"""One operator image: the Deployment of manifests/, the chart's, and the runner Jobs'.

The backup and drill Jobs run the operator's image (it holds the runners). The
three are rendered here as a user gets them: manifests/deployment.yaml as
kustomize installs it, the chart through Helm (tests/support/helm.py), and the
Jobs from the builders with the process's image catalog. That the Jobs follow the
image of the operator's own Pod, read from the API server, is
tests/cluster/test_operator_image.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from stackforge_operator import image_catalog
from stackforge_operator.version import VERSION
from tests.support.helm import only, template
from tests.unit import test_manifests as manifests
from tests.unit.builders.runners import runner_images
from tests.unit.builders.tenants import tenant

IMAGE = "stackforge/stackforge-operator:0.1.0"


def _chart_image(**kwargs: Any) -> str:
    pod = only(template(**kwargs), "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    return str(container["image"])


def test_deployment_chart_and_runner_jobs_name_one_image() -> None:
    kustomized = manifests.container()["image"]
    charted = _chart_image()
    # The catalog's default: what the Jobs run when the operator does not run in
    # a pod (or cannot find its container there).
    assert kustomized == charted == image_catalog.current().operator == IMAGE
    assert runner_images(tenant()) == {IMAGE}
    assert IMAGE.rpartition(":")[2] == VERSION


def test_manifests_and_chart_set_the_same_image_settings() -> None:
    kustomized = {e["name"]: e for e in manifests.container()["env"]}
    pod = only(template(), "Deployment")["spec"]["template"]["spec"]
    charted = {e["name"]: e for e in pod["containers"][0]["env"]}
    for name in ("POD_NAME", "POD_NAMESPACE", image_catalog.REGISTRY_ENV,
                 image_catalog.PULL_SECRETS_ENV):
        # An empty value and no value are the same setting (the API server
        # stores neither).
        assert {"value": "", **kustomized[name]} == {"value": "", **charted[name]}, name
    # No operator image setting: it would be a second place to keep in step.
    assert image_catalog.OPERATOR_IMAGE_ENV not in kustomized
    assert image_catalog.OPERATOR_IMAGE_ENV not in charted


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not on PATH")
def test_the_readmes_kustomize_overlay_sets_every_image_setting(tmp_path: Path) -> None:
    readme = (manifests.REPO / "README.md").read_text()
    found = re.search(r"or with kustomize, in an overlay of `manifests/`:\n\n```yaml\n(.*?)```",
                      readme, re.DOTALL)
    assert found, "README.md: the kustomize overlay of \"Your own images\" moved"
    overlay = yaml.safe_load(found.group(1))
    overlay["resources"] = [os.path.relpath(manifests.MANIFESTS, tmp_path)]
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    built = subprocess.run(["kubectl", "kustomize", str(tmp_path)], check=True,
                           capture_output=True, text=True, timeout=60).stdout
    [deployment] = [d for d in yaml.safe_load_all(built) if d and d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert len(env) == len(container["env"]), "a variable is set twice"
    catalog = image_catalog.from_settings({k: v for k, v in env.items() if v is not None})
    assert container["image"].startswith(f"{catalog.registry}/stackforge/stackforge-operator:")
    assert catalog.redis_image("7.2") == f"{catalog.registry}/redis:7.2"
    assert pod["imagePullSecrets"] == catalog.pod_pull_secrets() == [{"name": "regcred"}]
