from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes import client

from stackforge_operator import kube


def _kubeconfig(path: Path, server: str, token: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server,
                                               "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }))
    return path


def test_kubeconfig_is_read_from_the_environment_at_call_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    first = _kubeconfig(tmp_path / "one", "https://127.0.0.1:1111", "t1")
    second = _kubeconfig(tmp_path / "two", "https://127.0.0.1:2222", "t2")
    monkeypatch.setenv("KUBECONFIG", str(first))
    assert kube.load_configuration().host == "https://127.0.0.1:1111"
    monkeypatch.setenv("KUBECONFIG", str(second))
    assert kube.load_configuration().host == "https://127.0.0.1:2222"


def test_connection_info_carries_bearer_token_and_tls_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "k", "https://h:6443", "tok")))
    info = kube.connection_info(kube.load_configuration())
    assert info.server == "https://h:6443"
    assert (info.scheme, info.token) == ("Bearer", "tok")
    assert info.insecure is True


def test_connection_info_with_client_certificates() -> None:
    configuration = client.Configuration()
    configuration.host = "https://h:6443"
    configuration.cert_file = "/c.crt"
    configuration.key_file = "/c.key"
    configuration.ssl_ca_cert = "/ca.crt"
    info = kube.connection_info(configuration)
    assert (info.certificate_path, info.private_key_path, info.ca_path) == (
        "/c.crt", "/c.key", "/ca.crt"
    )
    assert info.token is None and info.scheme is None
