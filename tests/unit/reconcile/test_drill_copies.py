"""reconcile/drill.py: which pull secrets a drill sandbox gets copies of."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from stackforge_operator import image_catalog, kube
from stackforge_operator.builders import drill as builders
from stackforge_operator.reconcile import drill


def test_pull_secrets_come_from_the_drills_namespace(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    image_catalog.install(image_catalog.from_settings({
        image_catalog.PULL_SECRETS_ENV: f"regcred,absent,{builders.S3_SECRET}"}))
    asked: list[tuple[str, str | None]] = []
    live = {"regcred": {"type": "kubernetes.io/dockerconfigjson", "data": {}},
            builders.S3_SECRET: {"data": {}}}

    def get(api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
        asked.append((name, namespace))
        return live.get(name)

    monkeypatch.setattr(kube, "get", get)
    with caplog.at_level(logging.WARNING):
        found = drill._pull_secrets("tenant-acme")
    # Missing: skipped (the runtime pulls without it, as for the tenant's own pods);
    # named like a sandbox Secret: never read, never copied, and said so.
    assert found == {"regcred": live["regcred"]}
    assert asked == [("regcred", "tenant-acme"), ("absent", "tenant-acme")]
    assert builders.S3_SECRET in caplog.text


def test_no_pull_secrets_no_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "get", lambda *_a, **_k: pytest.fail("read a Secret"))
    assert drill._pull_secrets("tenant-acme") == {}
