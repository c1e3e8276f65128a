"""Unit tests see the image catalog's defaults, whatever the shell's environment holds; and,
when they ask, no cluster at all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stackforge_operator import image_catalog, kube


@pytest.fixture(autouse=True)
def default_image_catalog() -> Iterator[image_catalog.ImageCatalog]:
    catalog = image_catalog.from_settings({})
    previous = image_catalog.install(catalog)
    yield catalog
    image_catalog.install(previous)


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """kube.py with no cluster to reach: its first API call raises ConfigException.

    For tests proving that something reads nothing from the API (no fake API stands in).
    """
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    kube.reset_clients()
    yield
    kube.reset_clients()
