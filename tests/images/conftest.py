"""Fixtures of the image tests: a PostgreSQL pod's tree on the host (postgres_pods.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.images.postgres_pods import Pod, Server, make_pod, server_list


@pytest.fixture
def pod() -> Iterator[Pod]:
    yield from make_pod()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    yield from server_list()
