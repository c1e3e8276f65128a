from __future__ import annotations

import base64
from pathlib import Path

import yaml

from stackforge_operator.devcluster.kubeconfig import write_kubeconfig
from stackforge_operator.devcluster.pki import create_pki


def test_kubeconfig_inlines_credentials_and_is_private(tmp_path: Path) -> None:
    pki = create_pki(tmp_path / "pki", "10.96.0.1")
    path = write_kubeconfig(
        tmp_path / "admin.kubeconfig", "https://127.0.0.1:6443", pki.ca.cert, pki.admin,
        name="local",
    )
    document = yaml.safe_load(path.read_text())
    assert document["current-context"] == "local"
    cluster = document["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == pki.ca.cert.read_bytes()
    user = document["users"][0]["user"]
    assert base64.b64decode(user["client-key-data"]) == pki.admin.key.read_bytes()
    assert path.stat().st_mode & 0o077 == 0
