"""Fixtures of the cluster tests: tenant clean-up, and real PostgreSQL and S3 servers for
the tests that back up and restore."""

from collections.abc import Iterator

import pytest

from tests.support import tenants
from tests.support.backup_stack import stack  # noqa: F401 - registered as a fixture
from tests.support.clusters import ClusterHandle
from tests.support.drill_stack import backed_up  # noqa: F401 - registered as a fixture
from tests.support.fixtures_backup import (  # noqa: F401 - registered as fixtures
    postgres_server,
    s3_bucket,
    s3_server,
)


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
