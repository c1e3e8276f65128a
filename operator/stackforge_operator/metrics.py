"""The operator's Prometheus metrics, in a registry of their own.

A dedicated :class:`~prometheus_client.CollectorRegistry` (not the global one)
keeps the endpoint to exactly these series and lets every test build a fresh,
isolated set. Series (all prefixed ``stackforge_``):

- ``reconciles_total{kind, result}``: reconciles finished;
- ``reconcile_duration_seconds{kind}``: histogram of their durations;
- ``resyncs_skipped_total{kind}``: resyncs of a settled object that did not
  reconcile, nothing it depends on having changed (controller.py);
- ``tenants{ready="true"|"false"}``: tenants by their Ready condition;
- ``backup_newest_age_seconds{tenant}``: age of the newest complete backup;
- ``drill_last_verdict{tenant, verdict}``: 1 for the newest drill's verdict, 0 for the others;
- ``drill_last_rto_seconds{tenant}``: measured RTO of the newest drill;
- ``tenant_resources{tenant, resource, figure}``: requested, quota and used (status.usage);
- ``notifications_total{event, result}``: notification attempts: sent, retried, failed.
- ``active``: 1 while this replica reconciles, 0 while it stands by (kopf
  peering: another replica is active). Summed over replicas it must be 1.

The per-tenant series come from each tenant's own status (``lastBackup``,
``lastDrill``, the ``Ready`` condition), which already summarises all of its
BackupPolicies and DRDrills: one source, so two writers can never disagree.
They are computed when Prometheus scrapes, which keeps the backup age exact
between reconciles and drops a deleted tenant's series at once.
"""

from __future__ import annotations

import enum
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from wsgiref.simple_server import WSGIServer

import kopf
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

from stackforge_operator.models.common import parse_quantity

PREFIX: Final = "stackforge"
DEFAULT_PORT: Final = 9090
PORT_ENV: Final = "STACKFORGE_METRICS_PORT"
# From a no-op reconcile (reads only) to a slow first apply of a big tenant.
DURATION_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# Every verdict gets a series (0 or 1), so `== 1` and `== 0` both work in alerts.
VERDICTS: Final = ("Passed", "Failed")


class Result(enum.StrEnum):
    """How a reconcile ended (the ``result`` label)."""

    READY = "ready"  # converged
    RECONCILING = "reconciling"  # made progress, still converging
    STALLED = "stalled"  # waits for a human (PermanentError, bad spec)
    RETRY = "retry"  # TemporaryError: conflict, API trouble, forbidden
    ERROR = "error"  # anything unexpected


def result_of_progress(progress: str) -> Result:
    """The label for a reconcile that returned; ``progress`` is status.Progress's value."""
    return {"Ready": Result.READY, "Reconciling": Result.RECONCILING,
            "Stalled": Result.STALLED}.get(progress, Result.ERROR)


def result_of_conditions(obj: Mapping[str, Any] | None) -> Result:
    """The label for a reconcile whose outcome names no progress (policies', drills'):
    what the object's status says, as the reconcile wrote or kept it."""
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    true = {c.get("type") for c in conditions if c.get("status") == "True"}
    if "Stalled" in true:
        return Result.STALLED
    if "Ready" in true:
        return Result.READY
    return Result.RECONCILING


def result_of_error(error: BaseException) -> Result:
    """The label for a reconcile that raised."""
    if isinstance(error, kopf.TemporaryError):
        return Result.RETRY
    if isinstance(error, kopf.PermanentError):
        return Result.STALLED
    return Result.ERROR


@dataclass(frozen=True)
class TenantHealth:
    """What the per-tenant series show, read from one tenant's status."""

    ready: bool
    newest_backup: datetime | None = None
    drill_verdict: str | None = None
    drill_rto_seconds: float | None = None
    # (resource, figure, value in cores/bytes/pods) from status.usage.
    usage: tuple[tuple[str, str, float], ...] = ()


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def tenant_health(status: Mapping[str, Any] | None) -> TenantHealth:
    """Pure: the tenant's status as the API returns it (camelCase) -> TenantHealth."""
    status = status or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    backup = status.get("lastBackup") or {}
    drill = status.get("lastDrill") or {}
    rto = drill.get("rtoSeconds")
    return TenantHealth(
        ready=ready,
        newest_backup=_time(backup.get("lastSuccessTime")),
        drill_verdict=drill.get("verdict") or None,
        drill_rto_seconds=float(rto) if isinstance(rto, int | float) else None,
        usage=_usage(status.get("usage") or {}),
    )


def _usage(usage: Mapping[str, Any]) -> tuple[tuple[str, str, float], ...]:
    out = []
    for resource in ("cpu", "memory", "storage", "pods"):
        for figure in ("requested", "quota", "used"):
            value = (usage.get(resource) or {}).get(figure)
            if value is None:
                continue
            try:
                out.append((resource, figure, float(parse_quantity(str(value)))))
            except ValueError:
                continue
    return tuple(out)


class _TenantCollector:
    """Per-tenant gauges, computed at scrape time from the last health seen."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tenants: dict[str, TenantHealth] = {}

    def update(self, name: str, health: TenantHealth) -> None:
        with self._lock:
            self._tenants[name] = health

    def forget(self, name: str) -> None:
        with self._lock:
            self._tenants.pop(name, None)

    def describe(self) -> Iterable[Metric]:
        # Names only: keeps registration from calling collect().
        return self._families()

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            tenants = dict(self._tenants)
        return self._families(tenants, self._clock())

    def _families(
        self, tenants: Mapping[str, TenantHealth] | None = None, now: float = 0.0
    ) -> list[Metric]:
        count = GaugeMetricFamily(
            f"{PREFIX}_tenants", "StackForgeTenants by their Ready condition.", labels=["ready"])
        age = GaugeMetricFamily(
            f"{PREFIX}_backup_newest_age_seconds",
            "Seconds since the tenant's newest complete backup finished.",
            labels=["namespace", "tenant"])
        verdict = GaugeMetricFamily(
            f"{PREFIX}_drill_last_verdict",
            "1 for the verdict of the tenant's newest DR drill, 0 for the others.",
            labels=["namespace", "tenant", "verdict"])
        rto = GaugeMetricFamily(
            f"{PREFIX}_drill_last_rto_seconds",
            "Measured recovery time of the tenant's newest DR drill.",
            labels=["namespace", "tenant"])
        resources = GaugeMetricFamily(
            f"{PREFIX}_tenant_resources",
            "A tenant's requested, quota and used (metrics API) CPU cores, memory and "
            "storage bytes, and pods (status.usage).",
            labels=["namespace", "tenant", "resource", "figure"])
        if tenants is not None:
            ready = sum(h.ready for h in tenants.values())
            count.add_metric(["true"], ready)
            count.add_metric(["false"], len(tenants) - ready)
            for key, h in sorted(tenants.items()):
                # Controller keys: "<namespace>/<name>".
                namespace, _, name = key.rpartition("/")
                if h.newest_backup is not None:
                    age.add_metric([namespace, name],
                                   max(0.0, now - h.newest_backup.timestamp()))
                if h.drill_verdict is not None:
                    known = dict.fromkeys((*VERDICTS, h.drill_verdict))
                    for v in known:
                        verdict.add_metric([namespace, name, v],
                                           1.0 if v == h.drill_verdict else 0.0)
                if h.drill_rto_seconds is not None:
                    rto.add_metric([namespace, name], h.drill_rto_seconds)
                for resource, figure, value in h.usage:
                    resources.add_metric([namespace, name, resource, figure], value)
        return [count, age, verdict, rto, resources]


@dataclass
class _Timing:
    """Set ``result`` inside :meth:`OperatorMetrics.time_reconcile`; exceptions label themselves."""

    result: Result = Result.READY


class OperatorMetrics:
    """All of the operator's series, registered in ``self.registry``."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.reconciles = Counter(
            f"{PREFIX}_reconciles", "Reconciles finished, by kind and result.",
            ["kind", "result"], registry=self.registry)
        self.reconcile_duration = Histogram(
            f"{PREFIX}_reconcile_duration_seconds", "Time one reconcile took.",
            ["kind"], buckets=DURATION_BUCKETS, registry=self.registry)
        self.resyncs_skipped = Counter(
            f"{PREFIX}_resyncs_skipped", "Resyncs of a settled object that did not "
            "reconcile: nothing it depends on had changed.", ["kind"], registry=self.registry)
        self.watch_events = Counter(
            f"{PREFIX}_watch_events", "Watch events of the reconciled kinds, by kind: a flat "
            "line while objects change means a watch that stopped.", ["kind"],
            registry=self.registry)
        self.notifications = Counter(
            f"{PREFIX}_notifications", "Notification attempts, by event and result "
            "(sent, retried, failed).", ["event", "result"], registry=self.registry)
        self.active = Gauge(
            f"{PREFIX}_active",
            "1 while this replica reconciles, 0 while it stands by (peering).",
            registry=self.registry)
        self._tenants = _TenantCollector(clock)
        self.registry.register(self._tenants)

    def record_reconcile(self, kind: str, result: Result, seconds: float) -> None:
        self.reconciles.labels(kind=kind, result=result.value).inc()
        self.reconcile_duration.labels(kind=kind).observe(seconds)

    def record_skipped_resync(self, kind: str) -> None:
        self.resyncs_skipped.labels(kind=kind).inc()

    def record_watch_event(self, kind: str) -> None:
        self.watch_events.labels(kind=kind).inc()

    def record_notification(self, event: str, result: str) -> None:
        self.notifications.labels(event=event, result=result).inc()

    @contextmanager
    def time_reconcile(self, kind: str) -> Iterator[_Timing]:
        """Time the block and count it; an exception is labelled by its type and re-raised."""
        timing = _Timing()
        start = time.monotonic()
        try:
            yield timing
        except Exception as error:
            self.record_reconcile(kind, result_of_error(error), time.monotonic() - start)
            raise
        # A cancelled reconcile (operator shutting down) is not counted at all.
        self.record_reconcile(kind, timing.result, time.monotonic() - start)

    def observe_tenant(self, key: str, status: Mapping[str, Any] | None) -> None:
        """Take the per-tenant series from the tenant's latest status ("<namespace>/<name>")."""
        self._tenants.update(key, tenant_health(status))

    def forget_tenant(self, key: str) -> None:
        """The tenant is gone: drop its series."""
        self._tenants.forget(key)

    def serve(self, port: int, addr: str = "0.0.0.0") -> MetricsServer:  # noqa: S104
        """Serve /metrics from a daemon thread (port 0: any free port)."""
        server, thread = start_http_server(port, addr=addr, registry=self.registry)
        return MetricsServer(server, thread)


@dataclass(frozen=True)
class MetricsServer:
    """A running metrics endpoint."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def port_from_env(environ: Mapping[str, str] | None = None) -> int | None:
    """The configured port (``STACKFORGE_METRICS_PORT``), None when set to 0 (off)."""
    raw = (os.environ if environ is None else environ).get(PORT_ENV, str(DEFAULT_PORT))
    port = int(raw)
    if not 0 <= port <= 65535:
        raise ValueError(f"{PORT_ENV}={raw}: not a port number")
    return port or None


# The process's metrics; tests make their own OperatorMetrics instead.
METRICS: Final = OperatorMetrics()
