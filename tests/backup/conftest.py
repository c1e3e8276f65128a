"""Real-server fixtures for the backup tests (PostgreSQL from Debian, moto's S3 server)."""

from tests.images.postgres_pods import pod, servers  # noqa: F401 - registered as fixtures
from tests.support.fixtures_backup import (  # noqa: F401 - registered as fixtures
    pg_database,
    postgres_server,
    s3_bucket,
    s3_server,
    seeded_database,
)
