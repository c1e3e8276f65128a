"""Runs reconciles from a work queue, fed by watch events (see workqueue.py).

One Controller per kind: it keeps the latest body of every object (from the
watch, so a reconcile starts without a read), and reconciles them in threads
because the kubernetes client and boto3 block. Bodies are kept packed as the
watch caches keep objects (watch_cache.Packer): parsed, a tenant's body with its
status took about 16 KiB, packed alone about 1.2 KiB (with the kind's dictionary
about 0.1 KiB), and thousands are held at once;
each reconcile unpacks a private copy.

A settled object's resyncs are skipped while nothing it depends on has changed.
A reconcile may say its object is settled for a while (``quiet_seconds`` on its
outcome: converged, nothing written, and no time-based change due before
then); the controller keeps that beside the object's *inputs token* (a value
that differs whenever anything the reconcile reads may have changed: the
object's own resourceVersion and the watch caches' change counts). A resync
that finds the same token within that time does nothing: at a thousand
tenants, a full reconcile every resync was most of the operator's idle CPU.
An event (a change) never skips; the token decides that too, since every
change it reports moves the token.

A settled object has no resync timer: it runs next when its quiet time is
over, or when something moves its token. Its own changes come from the watch
(``observed``); for what the watch caches hold, the caches tell of every
change to a namespace's counts and ``wake_namespace`` enqueues the settled
objects there. An object whose token moved while it was being reconciled is
not settled (what moved it may have come too late for that reconcile), so a
change is never left to a settled object's quiet time. At a thousand tenants
the timers of the skipped resyncs (nine per tenant in each full-resync
period) were a large part of the idle CPU.

An object's consecutive failures back off: each retry waits twice as long as
the last, from the delay its error asks (5 s for a conflict or API trouble,
60 s for forbidden, 30 s for an unexpected error), up to
``config.RETRY_MAX_SECONDS``. With fixed delays, a thousand tenants retried
every 5 s through an API server outage (two hundred failing reconciles a
second against a server trying to come back), and an object failing for good
every 5 s for ever. The end of an outage does not wait for the longest
backoff: the watch caches list again once the API server answers, and that
wakes every failing object (``wake_namespace``); any success, or a stall for a
human, starts the count again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import kopf
from kubernetes.client.exceptions import ApiException

from stackforge_operator import API_GROUP, API_VERSION, config, kube, watch_cache
from stackforge_operator.metrics import METRICS, result_of_conditions, result_of_progress
from stackforge_operator.workqueue import WorkQueue

logger = logging.getLogger(__name__)


class WriteThenError(Exception):
    """A reconcile failed after it wrote the object: ``latest`` is the body its
    write returned, which the controller holds for the retry as it holds an
    Outcome's. Held without it, a retry ahead of the watch's echo reads the body
    from before the write (a drill's run recorded as started, then a 503 while
    its sandbox is made: a second run, and a second sandbox). ``error`` is
    handled as if the reconcile had raised it."""

    def __init__(self, error: Exception, latest: dict[str, Any]) -> None:
        super().__init__(str(error))
        self.error = error
        self.latest = latest


class Outcome(Protocol):
    @property
    def requeue_after(self) -> float: ...

    @property
    def latest(self) -> dict[str, Any] | None: ...


Reconcile = Callable[[Mapping[str, Any]], Outcome]
# The inputs token of an object's body; None: nothing can vouch that its inputs
# are unchanged (no watch caches, one not synced), so it is never skipped. Every
# change that moves a token other than the object's own must reach
# Controller.wake_namespace (handlers.py wires the watch caches to it).
InputsToken = Callable[[Mapping[str, Any]], Hashable | None]


@dataclass(frozen=True)
class _Settled:
    token: Hashable
    # time.monotonic() until which a resync with this token may be skipped.
    until: float


def _always() -> bool:
    return True


@dataclass(frozen=True)
class _Held:
    """An object's latest body, packed (without ``metadata.managedFields``: no
    reconcile reads them, and on a tenant whose status the operator writes they
    are most of its size), with what is read of it without unpacking."""

    resource_version: str
    deleting: bool
    packed: bytes
    uid: str


def _namespace_of(key: str) -> str:
    return key.partition("/")[0] if "/" in key else ""


# Deleted uids remembered, to ignore their late events (a few KiB).
GONE_UIDS_KEPT = 1024


def _uid(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("uid") or "")


def _version(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("resourceVersion") or "")


def object_key(body: Mapping[str, Any]) -> str:
    meta = body["metadata"]
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else str(meta["name"])


class Controller:
    """The latest body of every object of one kind, and the queue that reconciles them."""

    def __init__(
        self, kind: str, reconcile: Reconcile, *, workers: int = config.RECONCILE_WORKERS,
        stalled_seconds: float = config.STALLED_RECHECK_SECONDS,
        observe: Callable[[str, Mapping[str, Any] | None], None] | None = None,
        forget: Callable[[str], None] | None = None,
        is_active: Callable[[], bool] = _always,
        inputs_token: InputsToken | None = None,
    ) -> None:
        self.kind = kind
        self._inputs_token = inputs_token
        self._settled: dict[str, _Settled] = {}
        # Whether this replica may reconcile now (leadership.Leadership.active):
        # asked at every entry, so a paused replica never starts a reconcile even
        # before stand_by() has emptied the queue.
        self._is_active = is_active
        # Called with every status the controller learns of, and on deletion (metrics).
        self._observe = observe
        self._forget = forget
        self._reconcile_fn = reconcile
        self._stalled_seconds = stalled_seconds
        self._bodies: dict[str, _Held] = {}
        # Each failing object's consecutive failures (a success forgets it).
        self._failures: dict[str, int] = {}
        # kopf runs each object's events in a worker of its own, keyed by uid, so an
        # object deleted and made again under the same name can have its old self's
        # last events handled after the new one's first. The uids deleted, or
        # replaced by a newer object of their name: their late events change nothing.
        self._gone: OrderedDict[str, None] = OrderedDict()
        self._packer = watch_cache.Packer()
        # Keys by namespace, for wake_namespace.
        self._in_namespace: dict[str, set[str]] = {}
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=kind)
        self.queue = WorkQueue(self._reconcile, workers=workers)

    def _held(self, body: Mapping[str, Any]) -> _Held:
        meta = body.get("metadata") or {}
        return _Held(_version(body),
                     bool(meta.get("deletionTimestamp")), self._packer.pack(body), _uid(body))

    def start(self) -> None:
        self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def observed(self, body: Mapping[str, Any]) -> None:
        # Counted whether or not this replica reconciles: it tells a live watch.
        METRICS.record_watch_event(self.kind)
        if not self._is_active():
            # An event kopf let through while pausing: the active peer owns it,
            # and kopf re-lists everything when this replica resumes.
            return
        key = object_key(body)
        uid, version = _uid(body), _version(body)
        known = self._bodies.get(key)
        if uid in self._gone:
            return  # late news of an object gone or replaced under this name
        if known is not None and uid and known.uid and known.uid != uid:
            # A new object of this name, seen before its old self's deletion.
            self._forget_uid(known.uid)
            self._failures.pop(key, None)
        elif known is not None and watch_cache.newer_version(known.resource_version, version):
            # Older than what is held: the late echo of a write whose answer (a
            # reconcile's ``latest``) is already here. Taken, it would hand the next
            # reconcile a status this operator has since moved past (a recovery's
            # phase, a bootstrap's completion), to act on once more.
            return
        # The same version again (kopf re-lists everything when a watch resumes;
        # the echo of a status this operator wrote) changes nothing: due, not urgent.
        changed = known is None or known.resource_version != version
        self._bodies[key] = self._held(body)
        self._in_namespace.setdefault(_namespace_of(key), set()).add(key)
        self.queue.add(key, changed=changed)

    def deleted(self, body: Mapping[str, Any]) -> None:
        METRICS.record_watch_event(self.kind)
        key = object_key(body)
        uid = _uid(body)
        if uid:
            self._forget_uid(uid)
        known = self._bodies.get(key)
        if known is not None and uid and known.uid and known.uid != uid:
            return  # an older object of this name (the newer one stays), or one never held
        self._bodies.pop(key, None)
        self._unindex(key)
        self._settled.pop(key, None)
        self._failures.pop(key, None)
        self.queue.forget(key)
        if self._forget is not None:
            self._forget(key)

    def _forget_uid(self, uid: str) -> None:
        self._gone[uid] = None
        while len(self._gone) > GONE_UIDS_KEPT:
            self._gone.popitem(last=False)

    def poke(self, key: str, *, changed: bool = True) -> None:
        """Something it owns changed (or, ``changed=False``, was only listed again
        when its watch resumed): look at it again."""
        if key in self._bodies and self._is_active():
            self.queue.add(key, changed=changed)

    def poke_namespace(self, namespace: str) -> None:
        """Something every object held in ``namespace`` reads changed: look at each
        again now, settled or not (their resyncs may be a minute away)."""
        if self._is_active():
            for key in self._in_namespace.get(namespace, ()):
                self.queue.add(key, changed=True)

    def wake_namespace(self, namespace: str | None) -> None:
        """What the watch caches hold for ``namespace`` (None: for any namespace)
        changed: look again at the settled objects there (the others have their
        resync timers), behind the objects that changed themselves. For any
        namespace (None: a cache listed again, as after an outage), the failing
        objects too, whose backoff may be minutes: kopf resumes its watch where
        it was, without listing, unless the API server has compacted its history
        past it. Not for one namespace's change: that may be the echo of the
        failing reconcile's own writes, which would wake it again at once. Nor
        for a change seen of a cluster-wide kind (watch_cache.EVERY_NAMESPACE: a
        CRD or APIService): an unrelated add-on's install, hundreds of CRDs and
        their status updates, ended every failing object's backoff each time."""
        if not self._is_active():
            return
        if namespace is None:
            keys = list(self._settled.keys() | self._failures.keys())
        elif namespace == watch_cache.EVERY_NAMESPACE:
            keys = list(self._settled)
        else:
            keys = [k for k in self._in_namespace.get(namespace, ()) if k in self._settled]
        for key in keys:
            self.queue.add(key, changed=False)

    def _unmoved(self, key: str, token: Hashable) -> bool:
        """Whether the object's token is still ``token`` (nothing it reads changed
        while it was reconciled)."""
        assert self._inputs_token is not None
        held = self._bodies.get(key)
        return held is not None and self._inputs_token(self._packer.unpack(held.packed)) == token

    def _unindex(self, key: str) -> None:
        namespace = _namespace_of(key)
        keys = self._in_namespace.get(namespace)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._in_namespace[namespace]

    def stand_by(self) -> int:
        """Another replica is active: forget every object; returns how many.

        Bodies held on would go stale while the other replica works (a spec
        changed, a tenant deleted); reconciling them on resume could undo its
        work. kopf re-lists every watched object when it resumes, and that
        refills the controller with fresh bodies.
        """
        keys = list(self._bodies)
        self._bodies.clear()
        self._in_namespace.clear()
        self._settled.clear()
        self._failures.clear()
        self.queue.clear()
        if self._forget is not None:
            for key in keys:
                self._forget(key)
        return len(keys)

    def keys(self) -> list[str]:
        return list(self._bodies)

    def body(self, key: str) -> dict[str, Any] | None:
        """A private copy of the object's latest body."""
        held = self._bodies.get(key)
        return None if held is None else self._packer.unpack(held.packed)

    async def _reconcile(self, key: str) -> float | None:
        try:
            again = await self._run(key)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s %s: reconcile failed unexpectedly", self.kind, key)
            again = self._backoff(key, config.UNEXPECTED_RETRY_SECONDS)
        # Paused meanwhile: stand_by() forgot the object; no retry, no resync.
        return again if self._is_active() else None

    def _backoff(self, key: str, asked: float) -> float:
        """The wait before the retry of a failure that asked for ``asked`` seconds:
        doubled for each failure of the object before it in a row."""
        failures = self._failures.get(key, 0)
        if key in self._bodies:
            self._failures[key] = failures + 1
        return min(asked * 2.0 ** min(failures, 32), max(asked, config.RETRY_MAX_SECONDS))

    def _hold_written(self, key: str, held: _Held, latest: dict[str, Any]) -> None:
        """Keep the status just written, unless a newer event replaced the body
        meanwhile (an event older than it, the echo of an earlier write, does not)."""
        current = self._bodies.get(key)
        if current is not None and (
                current is held or (current.uid == _uid(latest) and watch_cache.newer_version(
                    _version(latest), current.resource_version))):
            self._bodies[key] = self._held(latest)

    async def _run(self, key: str) -> float | None:
        held = self._bodies.get(key)
        if held is None or held.deleting or not self._is_active():
            return None
        body = self._packer.unpack(held.packed)
        # Taken before the reconcile reads anything: a change during it moves the
        # token past this one, and the next resync runs in full.
        token = self._inputs_token(body) if self._inputs_token is not None else None
        settled = self._settled.get(key)
        now = time.monotonic()
        if (settled is not None and token is not None and settled.token == token
                and now < settled.until):
            METRICS.record_skipped_resync(self.kind)
            logger.debug("%s %s: settled, nothing it reads changed; resync skipped",
                         self.kind, key)
            return settled.until - now
        self._settled.pop(key, None)
        loop = asyncio.get_running_loop()
        try:
            try:
                with METRICS.time_reconcile(self.kind) as timing:
                    outcome = await loop.run_in_executor(self._executor, self._reconcile_fn,
                                                         body)
                    progress = getattr(outcome, "progress", None)
                    timing.result = (result_of_progress(progress.value) if progress is not None
                                     else result_of_conditions(
                                         getattr(outcome, "latest", None) or body))
            except WriteThenError as failed:
                self._hold_written(key, held, failed.latest)
                raise failed.error from failed
        except kopf.TemporaryError as error:
            delay = self._backoff(key, float(error.delay or config.RETRY_SECONDS))
            logger.info("%s %s: %s; retrying in %.0f s", self.kind, key, error, delay)
            return delay
        except kopf.PermanentError as error:
            self._failures.pop(key, None)
            logger.error("%s %s: %s", self.kind, key, error)
            return self._stalled_seconds
        except ApiException as error:
            # kopf re-lists after its watch expired (410) and reports what exists:
            # an object deleted in that gap never gets its DELETED event, and was
            # reconciled for ever (its children made again, and collected again,
            # its status write refused with 404). Asked of the API server itself.
            if error.status == 404 and await loop.run_in_executor(
                    self._executor, _gone_from_api, body):
                logger.info("%s %s: no longer exists (its deletion was not seen): "
                            "forgotten", self.kind, key)
                self.deleted(body)
                return None
            raise
        if key not in self._bodies:
            # Deleted or forgotten (stand_by) meanwhile: do not bring its series back.
            return None
        self._failures.pop(key, None)
        latest = outcome.latest
        if latest is not None:
            self._hold_written(key, held, latest)
        if self._observe is not None:
            self._observe(key, (latest or body).get("status"))
        quiet = getattr(outcome, "quiet_seconds", None)
        if token is not None and quiet is not None and quiet > 0 and latest is None \
                and self._unmoved(key, token):
            # Its own write moves the object's version, hence the token: a write
            # is never settled (the next resync confirms it).
            self._settled[key] = _Settled(token, time.monotonic() + quiet)
            # No resync until then: a change to what it reads wakes it (see above).
            return float(quiet)
        return outcome.requeue_after


def _gone_from_api(body: Mapping[str, Any]) -> bool:
    """The API server holds no object of this name, or another one (a new uid)."""
    meta = body.get("metadata") or {}
    live = kube.get(str(body.get("apiVersion") or f"{API_GROUP}/{API_VERSION}"),
                    str(body.get("kind")), str(meta.get("name")), meta.get("namespace"),
                    fresh=True)
    return live is None or (live.get("metadata") or {}).get("uid") != meta.get("uid")
