"""The only module that talks to the Kubernetes API.

One kubernetes ``ApiClient`` serves the whole process; kopf authenticates with
the same credentials through :func:`connection_info`.
"""

from __future__ import annotations

import os
import threading

import kopf
from kubernetes import client, config

_lock = threading.Lock()
_api_client: client.ApiClient | None = None


def load_configuration() -> client.Configuration:
    """In-cluster credentials inside a pod, else the kubeconfig named by $KUBECONFIG.

    $KUBECONFIG is read now, not when the kubernetes package was imported, so
    a process (or a test) that sets it late still gets the cluster it named.
    """
    configuration = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG") or None,
            client_configuration=configuration,
        )
    return configuration


def api_client() -> client.ApiClient:
    global _api_client
    with _lock:
        if _api_client is None:
            _api_client = client.ApiClient(load_configuration())
        return _api_client


def connection_info(configuration: client.Configuration) -> kopf.ConnectionInfo:
    """kopf's view of the same credentials the kubernetes client uses."""
    header = configuration.get_api_key_with_prefix(
        "BearerToken"
    ) or configuration.get_api_key_with_prefix("authorization")
    scheme, _, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )
