"""The metrics page of the tenant's primary PostgreSQL exporter, read over HTTP.

The operator holds no database login and no ``pods/exec``: what it needs from
the running primary (the replicas' lag, how far the WAL archive reaches) comes
from the exporter sidecar's page, our own queries in it (builders/exporters.py),
read the way Prometheus reads it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

from stackforge_operator.builders.exporters import POSTGRES_EXPORTER_PORT

logger = logging.getLogger(__name__)

# A scrape is small; a primary that does not answer in this long is reported
# as unknown, never waited for.
METRICS_TIMEOUT_SECONDS = 3.0

# Exporter URLs whose last read failed: a failure is logged when it starts and
# when it ends, not at every reconcile in between (an isolated tenant's
# exporter stays unreachable for as long as the isolation lasts).
_unreadable: set[str] = set()


def read(primary_pod: Mapping[str, Any] | None) -> str | None:
    """The page the primary's exporter serves now; None when it cannot be read."""
    address = ((primary_pod or {}).get("status") or {}).get("podIP")
    if not address:
        return None
    url = f"http://{address}:{POSTGRES_EXPORTER_PORT}/metrics"
    try:
        response = httpx.get(url, timeout=METRICS_TIMEOUT_SECONDS)
        response.raise_for_status()
    except httpx.HTTPError as error:
        if url not in _unreadable:
            _unreadable.add(url)
            logger.info("the primary's metrics are unreadable: %s: %s", url, error)
        return None
    if url in _unreadable:
        _unreadable.discard(url)
        logger.info("the primary's metrics are readable again: %s", url)
    return response.text
