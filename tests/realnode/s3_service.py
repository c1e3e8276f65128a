"""How pods reach the tests' S3 server: a Service in front of the node address.

pgBackRest checks the server's name, not its address, against its certificate,
so pods reach the server by this name, which its certificate carries
(conftest.py's ``pod_s3``), through a Service without a selector whose one
endpoint is the server on the host.
"""

from __future__ import annotations

S3_NAMESPACE = "stackforge-s3"
S3_SERVICE = "s3"
S3_SERVICE_NAME = f"{S3_SERVICE}.{S3_NAMESPACE}.svc"


def s3_service(node_ip: str, port: int) -> list[dict[str, object]]:
    """A Service without a selector, and its one endpoint: the S3 server on the host."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": S3_NAMESPACE}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": S3_SERVICE, "namespace": S3_NAMESPACE},
         "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": S3_SERVICE, "namespace": S3_NAMESPACE,
                      "labels": {"kubernetes.io/service-name": S3_SERVICE}},
         "addressType": "IPv4",
         "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
         "endpoints": [{"addresses": [node_ip], "conditions": {"ready": True}}]},
    ]
