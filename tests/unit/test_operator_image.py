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


def _runtime_closure() -> set[str]:
    """The installed distributions the package needs at run time (no extras)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    wanted, seen = ["stackforge-operator"], set[str]()
    while wanted:
        name = str(canonicalize_name(wanted.pop()))
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                wanted.append(requirement.name)
    return seen - {"stackforge-operator"}


def test_every_runtime_dependency_is_pinned_to_the_version_the_tests_ran_with() -> None:
    """The image installed the newest of everything at each build: a kopf release
    without the seam leadership.py patches would have crash-looped a rebuilt
    image while every test here passed. The image and .ci/run's environment now
    install the same pins."""
    from importlib import metadata

    from packaging.utils import canonicalize_name

    constraints = (Path(__file__).resolve().parents[2] / "images" / "operator"
                   / "constraints.txt").read_text()
    pins = dict(line.split("==", 1) for line in constraints.splitlines()
                if "==" in line and not line.startswith("#"))
    pinned = {str(canonicalize_name(name)): version for name, version in pins.items()}
    closure = _runtime_closure()
    assert {"kopf", "kubernetes", "pydantic", "boto3"} <= closure
    for name in sorted(closure):
        assert pinned.get(name) == metadata.version(name), (name, pinned.get(name))
    ci_run = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert "--constraint images/operator/constraints.txt -e '.[dev]'" in ci_run
