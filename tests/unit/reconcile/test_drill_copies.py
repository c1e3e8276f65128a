"""reconcile/drill.py without a cluster: pull secrets that are never read. (Those that
are, from the drill's namespace: tests/cluster/test_drill_pull_secrets.py.)"""

from __future__ import annotations

import logging

import pytest
from kubernetes.config import ConfigException

from stackforge_operator import image_catalog
from stackforge_operator.builders import drill as builders
from stackforge_operator.reconcile import drill

pytestmark = pytest.mark.usefixtures("no_cluster")


def test_no_pull_secrets_no_reads() -> None:
    assert drill._pull_secrets("tenant-acme") == {}


def test_a_pull_secret_named_like_a_sandbox_secret_is_never_read(
        caplog: pytest.LogCaptureFixture) -> None:
    image_catalog.install(image_catalog.from_settings({
        image_catalog.PULL_SECRETS_ENV: f"{builders.S3_SECRET},{builders.S3_CA_SECRET}"}))
    with caplog.at_level(logging.WARNING):
        assert drill._pull_secrets("tenant-acme") == {}
    assert builders.S3_SECRET in caplog.text and builders.S3_CA_SECRET in caplog.text
    # Had it been read, it would have failed like this:
    image_catalog.install(image_catalog.from_settings({
        image_catalog.PULL_SECRETS_ENV: "regcred"}))
    with pytest.raises(ConfigException):
        drill._pull_secrets("tenant-acme")
