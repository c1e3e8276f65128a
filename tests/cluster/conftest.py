"""Real PostgreSQL and S3 servers for the cluster tests that back up and restore."""

from tests.support.backup_stack import stack  # noqa: F401 - registered as a fixture
from tests.support.drill_stack import backed_up  # noqa: F401 - registered as a fixture
from tests.support.fixtures_backup import (  # noqa: F401 - registered as fixtures
    postgres_server,
    s3_bucket,
    s3_server,
)
