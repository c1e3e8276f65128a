"""One operator image: the Deployment of manifests/, the chart's, and the runner Jobs'.

The backup and drill Jobs run the operator's image (it holds the runners). The
three are rendered here as a user gets them: manifests/deployment.yaml as
kustomize installs it, the chart through Helm (tests/support/helm.py), and the
Jobs from the builders with the process's image catalog.
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

from stackforge_operator import handlers, image_catalog, kube
from stackforge_operator.builders.common import Manifest
from stackforge_operator.version import VERSION
from tests.support.helm import only, template
from tests.unit import test_manifests as manifests
from tests.unit.builders.runners import backup_objects, drill_objects, pod_specs
from tests.unit.builders.tenants import tenant

IMAGE = "stackforge/stackforge-operator:0.1.0"


def _chart_image(**kwargs: Any) -> str:
    pod = only(template(**kwargs), "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    return str(container["image"])


def _runner_images() -> set[str]:
    """The images of the backup CronJob, an on-demand backup and a drill's restore Job."""
    t = tenant()
    runners: list[Manifest] = [*backup_objects(t),
                               *(m for m in drill_objects(t) if m["kind"] == "Job")]
    specs = pod_specs(runners)
    assert {where.split("/")[0] for where, _ in specs} == {"CronJob", "Job"}
    return {c["image"] for _, pod in specs for c in pod["containers"]}


def test_deployment_chart_and_runner_jobs_name_one_image() -> None:
    kustomized = manifests.container()["image"]
    charted = _chart_image()
    # The catalog's default: what the Jobs run when the operator does not run in
    # a pod (or cannot find its container there).
    assert kustomized == charted == image_catalog.current().operator == IMAGE
    assert _runner_images() == {IMAGE}
    assert IMAGE.rpartition(":")[2] == VERSION


def test_runner_jobs_follow_the_deployment_wherever_it_pulls_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A user points the chart at a mirror; the operator finds that image in its
    # own pod at start-up, and the Jobs run it too.
    repository = "mirror.example.internal:5000/team/stackforge/stackforge-operator"
    docs = template(values={"image.repository": repository, "image.tag": "0.1.0-rc1"})
    deployment = only(docs, "Deployment")
    pod = {"metadata": {"name": "stackforge-operator-1", "namespace": "stackforge-system"},
           "spec": deployment["spec"]["template"]["spec"]}
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    monkeypatch.setenv("POD_NAME", "stackforge-operator-1")
    monkeypatch.setenv("POD_NAMESPACE", "stackforge-system")

    def get(api_version: str, kind: str, name: str, namespace: str | None = None
            ) -> dict[str, Any]:
        assert (api_version, kind, name, namespace) == (
            "v1", "Pod", "stackforge-operator-1", "stackforge-system")
        return pod

    monkeypatch.setattr(kube, "get", get)
    handlers.adopt_own_image()
    assert _runner_images() == {f"{repository}:0.1.0-rc1"}


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
