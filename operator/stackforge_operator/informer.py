"""Keeps one watch cache (watch_cache.Store) current: LIST once, then WATCH.

As client-go's reflector: a complete LIST replaces the store and gives the
resourceVersion to watch from; each watch event updates the store; a watch
ended by the server (its timeout) resumes from the last version seen
(bookmarks keep it fresh while nothing changes); 410 Gone (the version was
compacted away) marks the store unsynced and LISTs again. Any other failure
marks the store unsynced too, so
reads go to the API server and see its errors, until a LIST succeeds again
after a backoff capped at a few seconds (spread, so the kinds do not LIST in
step): its cost while the API server is away is one failed request per kind,
and a longer cap would leave the caches up to that long behind its return.
The backoff starts over only once a watch has held for a while, not after each
LIST: an API server that answers LISTs but refuses or drops every WATCH (429
from its priority and fairness, a proxy closing streams) was otherwise LISTed
in full by every kind about twice a second. A watch that ends at once without
an event is such a failure too (as client-go's "very short watch").

A thread per informer, because the kubernetes client blocks. Each change its
watch delivers is also handed to ``on_event`` (after the store has it), which
is how the operator's children wake their owners' reconciles; ``on_listed`` is
told after each complete LIST (which delivers no events).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from stackforge_operator import kube
from stackforge_operator.watch_cache import Store

logger = logging.getLogger(__name__)

# The server ends each watch after about this long (spread, so that the kinds'
# watches are not re-made together); the informer resumes it at once.
WATCH_SECONDS = 300
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 4.0
# A watch that held this long was healthy: the next failure's backoff starts over.
HEALTHY_WATCH_SECONDS = 30.0
# A watch ending sooner than this without an event failed (see above).
SHORT_WATCH_SECONDS = 1.0
# Forbidden is mended by a human (the ClusterRole of an older release beside a
# newer operator): asking every few seconds would only fill the API server's log.
FORBIDDEN_BACKOFF_SECONDS = 60.0
# One informer LISTs at a time, in pages of LIST_PAGE objects: every kind's first
# LIST at once (an operator restarted on a thousand tenants) parsed that many
# pages side by side, and the stores' long-lived strings, made meanwhile, pinned
# CPython's small-object arenas full of the pages' garbage: a restarted operator
# held twice the memory of one that had provisioned the same tenants.
LIST_PAGE = 100
_listing = threading.Lock()


class ShortWatchError(Exception):
    """A watch ended at once without delivering anything: something between the
    operator and the API server closes them (a failure, not the server's timeout)."""


# Called from the informer's thread with each watch event's type and object.
OnEvent = Callable[[str, Mapping[str, Any]], None]


class Informer:
    def __init__(self, store: Store, on_event: OnEvent | None = None, *,
                 on_listed: Callable[[], None] | None = None) -> None:
        self.store = store
        self._on_event = on_event
        self._on_listed = on_listed
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"informer-{store.kind}", daemon=True)
        # LISTs made (the first, and one after every expiry or failure): for tests
        # and the operator's log.
        self.lists = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 0.0) -> None:
        """Asks the thread to end; it does so when its current watch returns (a daemon
        thread, so it never holds the process)."""
        self._stopping.set()
        if timeout:
            self._thread.join(timeout)

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.store.synced and time.monotonic() < deadline:
            self._stopping.wait(0.05)
        return self.store.synced

    def _run(self) -> None:
        store = self.store
        api = kube.watch_client()
        backoff = FIRST_BACKOFF_SECONDS
        path: str | None = None
        while not self._stopping.is_set():
            try:
                if path is None:
                    path = kube.collection_path(store.api_version, store.kind)
                with _listing:
                    entries, version = kube.list_collection(
                        api, path, store.label_selector, LIST_PAGE,
                        metadata_only=store.counts_only, keep=store.pack)
                self.lists += 1
                store.replace_packed(entries, version)
                if self._on_listed is not None:
                    self._tell_listed()
                followed = time.monotonic()
                try:
                    self._follow(api, path, version)
                finally:
                    if time.monotonic() - followed >= HEALTHY_WATCH_SECONDS:
                        backoff = FIRST_BACKOFF_SECONDS
            except kube.WatchExpiredError:
                # Until the new LIST is in, what the store holds may include objects
                # deleted meanwhile (the LIST can wait behind other kinds' too):
                # reads go to the API server, as after any other failure.
                store.unsynced()
                logger.info("watch of %s expired; listing again", store.kind)
            except Exception as error:
                backoff = self._failed(error, path, backoff)

    def _failed(self, error: Exception, path: str | None, backoff: float) -> float:
        """Waits out a failed LIST or WATCH; the next backoff."""
        store = self.store
        store.unsynced()
        if isinstance(error, ApiException) and error.status == 403:
            logger.error("watch cache of %s: forbidden to list and watch %s; reads go to "
                         "the API server and no tenant's resyncs are skipped until the "
                         "operator's ClusterRole allows it (apply this release's RBAC); "
                         "asking again in %.0f s", store.kind, path,
                         FORBIDDEN_BACKOFF_SECONDS)
            self._stopping.wait(FORBIDDEN_BACKOFF_SECONDS)
            return backoff
        delay = backoff * random.uniform(0.5, 1.0)  # noqa: S311 - timing
        logger.warning("watch cache of %s failed (%s: %s); reads go to the API "
                       "server; listing again in %.1f s", store.kind,
                       type(error).__name__, error, delay)
        self._stopping.wait(delay)
        return min(backoff * 2, MAX_BACKOFF_SECONDS)

    def _tell_listed(self) -> None:
        assert self._on_listed is not None
        try:
            self._on_listed()
        except Exception:
            logger.exception("handling the LIST of %s failed", self.store.kind)

    def _wake(self, event_type: str, obj: Mapping[str, Any]) -> None:
        assert self._on_event is not None
        try:
            self._on_event(event_type, obj)
        except Exception:
            # Its failure (a closed event loop at shutdown) is not the watch's.
            logger.exception("handling a %s event of %s failed", event_type, self.store.kind)

    def _follow(self, api: Any, path: str, version: str) -> None:
        """Watch from ``version`` until stopped (or a watch fails: raises)."""
        while not self._stopping.is_set():
            seconds = int(WATCH_SECONDS * random.uniform(0.8, 1.0))  # noqa: S311 - timing
            started, events = time.monotonic(), 0
            for event_type, obj in kube.watch_collection(
                    api, path, self.store.label_selector, version, seconds,
                    metadata_only=self.store.counts_only):
                events += 1
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if event_type != "BOOKMARK":
                    self.store.watched(event_type, obj)
                    if self._on_event is not None and not self._stopping.is_set():
                        self._wake(event_type, obj)
                if self._stopping.is_set():
                    return
            if events == 0 and time.monotonic() - started < SHORT_WATCH_SECONDS \
                    and not self._stopping.is_set():
                raise ShortWatchError(
                    f"the watch of {self.store.kind} ended at once without an event")
