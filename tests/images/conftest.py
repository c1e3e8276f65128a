"""Fixtures of the image tests: a PostgreSQL pod's tree on the host (postgres_pods.py)."""

from tests.images.postgres_pods import pod, servers  # noqa: F401 - registered as fixtures
