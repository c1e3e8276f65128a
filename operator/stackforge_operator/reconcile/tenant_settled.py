"""When a converged tenant's resyncs may be skipped (controller.py skips them).

A reconcile that finds its tenant Ready and changes nothing (no child applied
or deleted, no status written, no notification) would do exactly the same
again until something it reads moves: its own body, what the watch caches hold
for its namespace, or the clock. :func:`inputs_token` covers the first two;
:func:`quiet_seconds` the clock: the soonest time-based change the reconcile
can foresee, and at most ``config.FULL_RESYNC_SECONDS``, which bounds the
inputs no cache holds (config.py names them).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from stackforge_operator import config, watch_cache
from stackforge_operator import usage as tenant_usage
from stackforge_operator.models.tenant import CertificateStatus, UsageStatus


def inputs_token(body: Mapping[str, Any]) -> Hashable | None:
    """The tenant's version and its namespace's changes in every watch cache; None
    without synced caches (nothing then vouches for unchanged inputs)."""
    meta = body["metadata"]
    changes = watch_cache.CACHES.changes(str(meta.get("namespace") or ""))
    if changes is None:
        return None
    return str(meta.get("resourceVersion") or ""), changes


def certificate_changes_at(certificate: CertificateStatus | None) -> datetime | None:
    """When ``daysRemaining`` next counts down (tenant_observe.certificate floors it)."""
    if certificate is None or certificate.not_after is None \
            or certificate.days_remaining is None:
        return None
    return certificate.not_after - timedelta(days=certificate.days_remaining)


def usage_stale_at(usage: UsageStatus | None) -> datetime | None:
    """When measured use is read again. The quota's counts alone never go stale by
    time: the ResourceQuota is a cached child, and its changes move the token."""
    if usage is None or not tenant_usage.measures_anything(usage):
        return None
    return usage.observed_at + timedelta(seconds=config.USAGE_REFRESH_SECONDS)


def quiet_seconds(now: datetime, changes_at: Iterable[datetime | None],
                  longest: float) -> float | None:
    """Seconds until the first of ``changes_at`` (at most ``longest``); None when
    one is due already (the tenant is not settled: run every resync)."""
    seconds = min([longest, *((when - now).total_seconds()
                              for when in changes_at if when is not None)])
    return seconds if seconds > 0 else None
