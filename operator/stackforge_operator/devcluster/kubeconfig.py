"""Kubeconfig files for the local control plane's clients."""

from __future__ import annotations

import base64
import hashlib
import tempfile
from pathlib import Path

import yaml

from stackforge_operator.devcluster.pki import KeyPair


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def render_kubeconfig(server: str, ca_cert: Path, client: KeyPair, *, name: str) -> str:
    """A self-contained kubeconfig (certificates inlined) for one client identity."""
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_cert)},
            }
        ],
        "users": [
            {
                "name": name,
                "user": {
                    "client-certificate-data": _b64(client.cert),
                    "client-key-data": _b64(client.key),
                },
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
    return yaml.safe_dump(document, sort_keys=False)


def write_kubeconfig(
    path: Path, server: str, ca_cert: Path, client: KeyPair, *, name: str
) -> Path:
    path.write_text(render_kubeconfig(server, ca_cert, client, name=name))
    # It carries a private key.
    path.chmod(0o600)
    return path


def python_discovery_cache(server: str) -> Path:
    """Where the Python client's DynamicClient keeps its discovery of ``server``.

    Without a ``cache_file`` it writes ``osrcp-<md5 of the server URL>.json`` to
    the temporary directory and never removes it: a file per API server, and every
    local cluster has a new port (the operator and the plugin both use it). The
    cluster that made the address removes it when it stops.
    """
    digest = hashlib.md5(server.encode("utf-8"), usedforsecurity=False).hexdigest()
    return Path(tempfile.gettempdir()) / f"osrcp-{digest}.json"
