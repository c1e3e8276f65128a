"""Unit tests see the image catalog's defaults, whatever the shell's environment holds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stackforge_operator import image_catalog


@pytest.fixture(autouse=True)
def default_image_catalog() -> Iterator[image_catalog.ImageCatalog]:
    catalog = image_catalog.from_settings({})
    previous = image_catalog.install(catalog)
    yield catalog
    image_catalog.install(previous)
