"""The runners' S3 client verifies with AWS_CA_BUNDLE, which the Jobs set from endpointCA."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackforge_operator.backup.store import StoreConfig, make_client


def test_runner_client_takes_its_ca_bundle_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # builders/s3ca.py relies on this: make_client must never pass its own `verify`.
    bundle = tmp_path / "ca.crt"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(bundle))
    client = make_client(StoreConfig(bucket="backups", endpoint="https://10.1.2.3:9000"))
    assert client._endpoint.http_session._verify == str(bundle)  # type: ignore[attr-defined]
