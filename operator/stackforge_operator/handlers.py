"""kopf handlers: thin entry points that feed the controllers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from stackforge_operator import (
    API_GROUP,
    API_VERSION,
    cached_kinds,
    config,
    image_catalog,
    kube,
    leadership,
    metrics,
    wakeups,
    watch_cache,
)
from stackforge_operator.controller import Controller
from stackforge_operator.notify.sender import Backoff, Sender
from stackforge_operator.reconcile import (
    backup,
    drill,
    drill_orphans,
    tenant,
    tenant_notify,
    tenant_settled,
)
from stackforge_operator.version import VERSION

logger = logging.getLogger(__name__)

TENANTS = (API_GROUP, API_VERSION, "stackforgetenants")
BACKUP_POLICIES = (API_GROUP, API_VERSION, "backuppolicies")
DRILLS = (API_GROUP, API_VERSION, "drdrills")
# Like the decorators below, this hooks into kopf at import, before kopf.run
# (`stackforge-operator run` and `kopf run -m stackforge_operator.handlers` alike).
PAUSE_SEAM = leadership.install()
# How often the orphan sweep looks whether this replica leads (cheap: no request).
ORPHAN_SWEEP_TICK_SECONDS = 5.0


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    return kube.connection_info(kube.api_client().configuration)


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config.apply_settings(settings)
    try:
        image_catalog.current()
    except image_catalog.CatalogError as error:
        # A wrong image setting would fail every reconcile: refuse to start instead.
        raise kopf.PermanentError(str(error)) from error
    try:
        notify_destinations = config.notify_destinations()
    except ValueError as error:
        raise kopf.PermanentError(str(error)) from error
    await asyncio.to_thread(adopt_own_image)
    toggles = leadership.recorded_toggles()
    if toggles is None and not settings.peering.standalone:
        # Ungated controllers of a paused replica would reconcile beside the active one.
        raise kopf.PermanentError(
            "peering needs kopf's pause state, which this kopf version does not expose "
            "where stackforge_operator.leadership looks for it; run one replica standalone")
    # Mandatory peering (--peering NAME) starts paused until kopf has read the
    # peering object; kopf's auto-detected peering starts unpaused, like kopf.
    gate = memo.gate = leadership.Leadership(toggles, peering=settings.peering.mandatory)
    # Notifications go out from tasks of their own: a reconcile only queues them.
    memo.notifier = Sender(
        timeout=config.NOTIFY_TIMEOUT_SECONDS, attempts=config.NOTIFY_ATTEMPTS,
        destinations=notify_destinations,
        backoff=Backoff(first=config.NOTIFY_BACKOFF_SECONDS,
                        cap=config.NOTIFY_MAX_BACKOFF_SECONDS),
        on_result=metrics.METRICS.record_notification)
    await memo.notifier.start()
    memo.tenants = Controller("StackForgeTenant",
                              functools.partial(tenant.reconcile, notify=memo.notifier.submit),
                              observe=metrics.METRICS.observe_tenant,
                              forget=metrics.METRICS.forget_tenant,
                              is_active=lambda: gate.active,
                              # Without watch caches every resync reads the API server.
                              inputs_token=tenant_settled.inputs_token
                              if config.WATCH_CACHES else None)
    memo.backups = Controller("BackupPolicy", backup.reconcile, is_active=lambda: gate.active)
    memo.drills = Controller("DRDrill", drill.reconcile, is_active=lambda: gate.active)
    memo.controllers = (memo.tenants, memo.backups, memo.drills)
    # Before the first reconcile can read: each store answers once its LIST is in.
    # Their watches wake the owners of what changed (the children are not kopf's).
    owners = {"tenant": memo.tenants, "backup": memo.backups, "drill": memo.drills}
    if config.WATCH_CACHES:
        # A settled tenant has no resync timer: what its inputs token counts wakes it.
        watch_cache.CACHES.listen(functools.partial(
            _wake_namespace, asyncio.get_running_loop(), memo.tenants))
    memo.cached_kinds = await asyncio.to_thread(cached_kinds.start, functools.partial(
        _wake_owners, asyncio.get_running_loop(), owners))
    for controller in memo.controllers:
        controller.start()
    memo.leadership = asyncio.create_task(
        gate.follow(lambda active: _leadership_changed(memo, active)), name="leadership")
    memo.orphan_sweep = asyncio.create_task(_reap_orphans(gate), name="drill-orphan-sweep")
    memo.metrics_server = None
    port = metrics.port_from_env()
    if port:
        try:
            memo.metrics_server = metrics.METRICS.serve(port)
        except OSError as error:
            # Metrics are for humans; the operator works without them.
            logger.error("cannot serve metrics on port %s: %s", port, error)


def adopt_own_image() -> None:
    """Runner Jobs run the image this operator runs in, unless a setting names one.

    Read once from the operator's own Pod (named by the downward API): the
    Deployment, however it was installed and whatever registry it pulls from,
    and the Jobs then cannot disagree. Outside a pod the default stays.
    """
    catalog = image_catalog.current()
    pod = image_catalog.own_pod(os.environ)
    if catalog.operator_pinned or pod is None:
        return
    found = kube.get("v1", "Pod", pod.name, pod.namespace)
    image = image_catalog.container_image(found or {}, image_catalog.OPERATOR_CONTAINER)
    if image is None:
        logger.warning("no container %r in my pod %s/%s; runner Jobs use %s",
                       image_catalog.OPERATOR_CONTAINER, pod.namespace, pod.name,
                       catalog.operator)
        return
    image_catalog.install(catalog.with_operator(image))
    logger.info("runner Jobs use my own image %s", image)


def _leadership_changed(memo: kopf.Memo, active: bool) -> None:
    metrics.METRICS.active.set(1 if active else 0)
    if active:
        # kopf has resumed its watch streams; their re-listing feeds the controllers.
        logger.info("active: reconciling what kopf lists")
        return
    dropped = sum(c.stand_by() for c in memo.controllers)
    logger.info("standing by (kopf peering paused this replica); forgot %d object(s)", dropped)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.leadership.cancel()
    memo.orphan_sweep.cancel()
    for controller in memo.controllers:
        await controller.stop()
    watch_cache.CACHES.listen(None)
    cached_kinds.stop(memo.cached_kinds)
    await memo.notifier.stop()
    if memo.metrics_server is not None:
        memo.metrics_server.stop()


def _feed(controller: Controller, event_type: str, body: kopf.Body) -> None:
    # The reconcile it wakes reads the watch caches: at least this version.
    watch_cache.CACHES.observed(event_type or "MODIFIED", body)
    if event_type == "DELETED":
        controller.deleted(body)
    else:
        controller.observed(body)


@kopf.on.event(*TENANTS)
async def tenant_changed(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _feed(memo.tenants, type, body)
    _wake_policies_on_isolation(memo, type, body)
    if type == "DELETED" and memo.gate.active:
        # Reading the channels' Secrets blocks: off the event loop.
        try:
            sends = await asyncio.to_thread(tenant_notify.farewell, dict(body), datetime.now(UTC))
        except kopf.TemporaryError as error:
            # No later reconcile can send them: the tenant is gone.
            logger.warning("tenant %s deleted; its incidents stay unresolved: %s",
                           body.metadata.name, error)
            return
        memo.notifier.submit(sends)


def _wake_policies_on_isolation(memo: kopf.Memo, event_type: str, body: kopf.Body) -> None:
    """The tenant's isolation turned on or off: its BackupPolicies' egress objects
    (the runners', the primary's to the archive) follow now, not at their next
    resync a minute later. Their controller is poked for the tenant's namespace,
    where they live (tenantRef resolves there); a change is seen once per replica."""
    key = f"{body.metadata.namespace}/{body.metadata.name}"
    seen: dict[str, bool] = memo.setdefault("isolation_seen", {})
    if event_type == "DELETED":
        seen.pop(key, None)
        return
    isolate = bool((body.get("spec") or {}).get("isolate"))
    if key in seen and seen[key] != isolate and body.metadata.namespace:
        memo.backups.poke_namespace(body.metadata.namespace)
    seen[key] = isolate


@kopf.on.event(*BACKUP_POLICIES)
async def policy_changed(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _feed(memo.backups, type, body)
    # A policy's runs feed its tenant's BackupHealthy.
    memo.tenants.poke(_referenced_tenant_key(body))


@kopf.on.event(*DRILLS)
async def drill_changed(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _feed(memo.drills, type, body)
    # A drill's verdict feeds its tenant's DrillPassing.
    memo.tenants.poke(_referenced_tenant_key(body))
    if type == "DELETED" and memo.gate.active:
        # Its sandboxes are Namespaces, which nothing else deletes with it.
        await _reap_sandboxes(body.metadata.namespace, body.metadata.name)


async def _reap_sandboxes(drill_namespace: str | None = None, drill: str | None = None) -> None:
    try:
        await asyncio.to_thread(drill_orphans.reap, drill_namespace, drill)
    except (kopf.TemporaryError, ApiException) as error:
        # The periodic pass (_reap_orphans) tries again: one failure must not
        # end it, whatever the API server answered.
        logger.warning("orphaned drill sandboxes not deleted yet: %s", error)


async def _reap_orphans(gate: leadership.Leadership) -> None:
    """Sandboxes of drills deleted while no operator watched: as soon as this
    replica is the active one, then every STACKFORGE_DRILL_ORPHAN_SWEEP_SECONDS."""
    last: float | None = None
    while True:
        if not gate.active:
            last = None  # the next leadership looks at once
        elif last is None or time.monotonic() - last >= config.DRILL_ORPHAN_SWEEP_SECONDS:
            last = time.monotonic()
            try:
                await _reap_sandboxes()
            except Exception:
                # Anything else (a discovery race of the dynamic client's) ended
                # this task unseen until shutdown, and orphaned sandboxes, with
                # restored customer data and the bucket's keys, stayed for good.
                logger.exception("the sweep of orphaned drill sandboxes failed; "
                                 "trying again in %s s", config.DRILL_ORPHAN_SWEEP_SECONDS)
        await asyncio.sleep(min(ORPHAN_SWEEP_TICK_SECONDS, config.DRILL_ORPHAN_SWEEP_SECONDS))


def _referenced_tenant_key(body: kopf.Body) -> str:
    # tenantRef resolves in the referrer's own namespace.
    name = str(body.get("spec", {}).get("tenantRef", {}).get("name", ""))
    return f"{body.metadata.namespace}/{name}"


def _wake_owners(loop: asyncio.AbstractEventLoop, owners: Mapping[str, Controller],
                 kind: str, event_type: str, obj: Mapping[str, Any]) -> None:
    """An informer saw one of the operator's objects change: wake its owners'
    reconciles (called in the informer's thread; the controllers live in the loop's)."""
    del event_type  # a deletion wakes them as well: they make it again, or are gone too
    # The loop may close between any check and the call (the operator stopping; its
    # informers end with their watches): as in _wake_namespace, that ends the wake.
    with contextlib.suppress(RuntimeError):
        for owner, key in wakeups.owners(kind, obj.get("metadata") or {}):
            loop.call_soon_threadsafe(owners[owner].poke, key)


def _wake_namespace(loop: asyncio.AbstractEventLoop, tenants: Controller,
                    namespace: str | None) -> None:
    """A watch cache's counts for ``namespace`` moved (in any thread): wake the
    settled tenants there."""
    with contextlib.suppress(RuntimeError):  # the loop has closed: stopping
        loop.call_soon_threadsafe(tenants.wake_namespace, namespace)


@kopf.on.probe(id="version")
def report_version(**_: Any) -> str:
    # Cheap on purpose: liveness must not depend on the API server being up,
    # or an API blip would restart every operator replica.
    return VERSION


@kopf.on.probe(id="workQueues")
def check_work_queues(memo: kopf.Memo, **_: Any) -> str:
    """Fails the liveness endpoint (kopf answers 500 when a probe fails for good) when a
    controller's queue has stopped making progress: the process is up but does no
    work, which only a restart mends. Reads memory only, like the version probe."""
    # Before start-up has made them, there is nothing to judge.
    wedged = [f"{controller.kind}: {reason}"
              for controller in getattr(memo, "controllers", ())
              if (reason := controller.queue.wedged(config.WEDGED_SECONDS)) is not None]
    if wedged:
        logger.error("liveness: work queue stopped: %s", "; ".join(wedged))
        # Permanent: kopf would otherwise retry the probe in 60 s, holding the request.
        raise kopf.PermanentError("work queue stopped: " + "; ".join(wedged))
    return "progressing"
