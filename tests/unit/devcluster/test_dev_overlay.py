"""examples/ adjusted for the local real node: what changes, and that each change is said."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stackforge_operator.devcluster import dev_overlay
from stackforge_operator.devcluster.node.services import TESTAPP_IMAGE
from stackforge_operator.models.backup import BackupPolicySpec
from stackforge_operator.models.drill import DRDrillSpec
from stackforge_operator.models.tenant import StackForgeTenantSpec

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
S3 = dev_overlay.LocalS3("https://10.244.0.1:4566", "stackforge-backups")


def _examples() -> list[dict[str, Any]]:
    return [d for p in sorted(EXAMPLES.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())
            if d]


def _kind(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(d for d in documents if d["kind"] == kind)


def test_only_what_has_an_image_here_runs_and_every_change_is_said() -> None:
    original = _examples()
    adjusted, notes = dev_overlay.adjust(original, S3)
    tenant = _kind(adjusted, "StackForgeTenant")["spec"]["components"]
    assert tenant["postgres"]["version"] == dev_overlay.POSTGRES_MAJOR_ON_NODE
    assert tenant["postgres"]["pooler"]["enabled"]  # the project's PgBouncer image
    assert tenant["redis"]["enabled"]
    assert tenant["redis"]["version"] == dev_overlay.REDIS_VERSION_ON_NODE
    assert not tenant["consul"]["enabled"]
    assert tenant["kafka"]["enabled"]  # the project's Kafka image
    assert tenant["kafka"]["version"] == dev_overlay.KAFKA_VERSION_ON_NODE
    assert tenant["kong"]["replicas"] == 0
    apps = {a["name"]: a for a in tenant["apps"]}
    assert set(apps) == {"api", "web"}
    for app in apps.values():
        assert app["image"] == TESTAPP_IMAGE and app["replicas"] == 1
        assert app["env"]["PORT"] == str(app["port"]) and "autoscaling" not in app
    assert "notifications" not in _kind(adjusted, "StackForgeTenant")["spec"]
    for component in ("Redis", "Kafka", "consul", "kong", "app api", "app web", "PostgreSQL",
                      "notifications"):
        assert any(component in note for note in notes), component
    # The files themselves are untouched.
    original_apps = _kind(original, "StackForgeTenant")["spec"]["components"]["apps"]
    assert original_apps[0]["image"] != TESTAPP_IMAGE


def test_backups_go_to_the_local_server_and_the_drill_runs_at_once() -> None:
    adjusted, _notes = dev_overlay.adjust(_examples(), S3)
    storage = _kind(adjusted, "BackupPolicy")["spec"]["storage"]
    assert storage["endpoint"] == S3.endpoint and storage["bucket"] == S3.bucket
    assert storage["endpointCA"] == {"name": dev_overlay.S3_CA_SECRET}
    assert "GrafanaDashboards" not in _kind(adjusted, "BackupPolicy")["spec"]["targets"]
    drill = _kind(adjusted, "DRDrill")["spec"]
    assert drill["once"] is True and "schedule" not in drill


def test_adjusted_examples_are_still_valid_objects() -> None:
    adjusted, _notes = dev_overlay.adjust(_examples(), S3)
    StackForgeTenantSpec.model_validate(_kind(adjusted, "StackForgeTenant")["spec"])
    BackupPolicySpec.model_validate(_kind(adjusted, "BackupPolicy")["spec"])
    DRDrillSpec.model_validate(_kind(adjusted, "DRDrill")["spec"])


def test_dev_secrets_say_they_are_dev_only() -> None:
    secret = dev_overlay.dev_secret("s3", "tenant-acme", {"k": "v"})
    assert secret["metadata"]["labels"][dev_overlay.DEV_ONLY_LABEL] == "true"
    assert "not a credential" in secret["metadata"]["annotations"]["stackforge.io/note"]
