"""Cluster Service names for the operator the real-node tests run on the host.

In production the operator runs in a pod, where the cluster's DNS answers for
``<service>.<namespace>.svc``. The tests run it on the host, whose resolver
knows no such name, so a policy naming the S3 server the way pods reach it
(the name its certificate carries) would be unreadable to the operator.
Put on the operator's PYTHONPATH, this maps the names listed in
STACKFORGE_TEST_SERVICE_ADDRESSES (``name=ip,...``) to their Services' cluster
IPs, which the node's kube-proxy serves to the host as to any pod; TLS still
checks the name. Every other name resolves as usual.
"""

from __future__ import annotations

import os
import socket
from typing import Any

_ADDRESSES = dict(item.split("=", 1) for item in
                  os.environ.get("STACKFORGE_TEST_SERVICE_ADDRESSES", "").split(",") if item)

if _ADDRESSES:
    _resolve = socket.getaddrinfo

    def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str) and name.rstrip(".") in _ADDRESSES:
            host = _ADDRESSES[name.rstrip(".")]
        return _resolve(host, *args, **kwargs)

    socket.getaddrinfo = _getaddrinfo
