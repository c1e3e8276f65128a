"""Fixtures of the cluster tests: tenant clean-up. (Backups and drills run on the real
node: tests/realnode.)"""

from collections.abc import Iterator

import pytest

from tests.support import tenants
from tests.support.clusters import ClusterHandle


@pytest.fixture
def cleanup(cluster: ClusterHandle) -> Iterator[list[str]]:
    """Tenants a test created (it appends their names), deleted when it ends.

    Not waiting: names are unique, the teardown of their namespaces runs beside
    the next test, and the one test that counts writes waits for a quiet cluster itself.
    """
    names: list[str] = []
    yield names
    for name in names:
        tenants.discard(cluster, name)
