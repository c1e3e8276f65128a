"""A keyed work queue for reconcilers, in the manner of controller-runtime.

Watch events only *enqueue* a key (a tenant name); workers run the reconcile
for it. A key is never reconciled by two workers at once, bursts of events
for one key collapse into one run, and a key that changes while it is being
reconciled runs once more afterwards. Every outcome decides when the key runs
next: a periodic resync, a short retry, or a long wait for a human.

Keys added for a change (a new or changed object, a child that moved) go
ahead of keys whose timer fired (resyncs, retries): a tenant applied while
every tenant's resync is due, or while an outage's retries are queued,
does not wait behind them. Not for ever: a key due for ``DUE_AGING_SECONDS``
joins the changed ones (at their end), so that a steady stream of changes
(children's status during a node pool's drain) cannot starve retries and
timers that are deadlines (a suspend window opening).

Reconciling from a queue rather than from kopf's per-object handlers needs
no finalizer (kopf adds one for daemons and timers) and writes no progress
annotations, so a converged resync makes no write requests at all.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

# What a reconcile returns: seconds until the key should run again (None: never,
# until an event enqueues it).
Reconcile = Callable[[str], Awaitable[float | None]]
# Queue priorities: lower runs first.
CHANGED, DUE = 0, 1
# Delays this long or longer (resyncs, waits for a human) are spread over up to a
# tenth before they end: tenants applied together would otherwise resync
# together, a wave every minute. Never after: a delay is often a deadline (a
# suspend window opening in an hour was acted on up to six minutes late when
# spread either way). Short retries keep their time.
SPREAD_FROM_SECONDS = 10.0
SPREAD = 0.1
DUE_AGING_SECONDS = 60.0


def spread(delay: float) -> float:
    if delay < SPREAD_FROM_SECONDS:
        return delay
    return delay * random.uniform(1 - SPREAD, 1.0)  # noqa: S311 - timing, not secrets


@dataclass
class WorkQueue:
    reconcile: Reconcile
    workers: int = 4
    # (priority, arrival, key); a key promoted to CHANGED leaves a stale DUE entry
    # behind, which the workers skip (``_queued`` holds each key's priority).
    _queue: asyncio.PriorityQueue[tuple[int, int, str]] = field(
        default_factory=asyncio.PriorityQueue, init=False)
    _queued: dict[str, int] = field(default_factory=dict, init=False)
    _arrivals: itertools.count[int] = field(default_factory=itertools.count, init=False)
    # Running keys, and when each started (the liveness probe judges progress by it).
    _running: dict[str, float] = field(default_factory=dict, init=False)
    _dirty: set[str] = field(default_factory=set, init=False)
    _timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict, init=False)
    # The aging clock of each key queued as DUE (see DUE_AGING_SECONDS).
    _aging: dict[str, asyncio.TimerHandle] = field(default_factory=dict, init=False)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, init=False)
    # When a reconcile last finished, or a key came to a queue with nothing waiting:
    # waiting keys are late only when neither happened for a while.
    _progress_at: float = field(default_factory=time.monotonic, init=False)
    runs: int = field(default=0, init=False)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"reconcile-worker-{i}")
            for i in range(self.workers)
        ]

    async def stop(self) -> None:
        for handle in [*self._timers.values(), *self._aging.values()]:
            handle.cancel()
        self._timers.clear()
        self._aging.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def add(self, key: str, *, changed: bool = True) -> None:
        """Reconcile ``key`` soon (now, unless it is running: then right after);
        ahead of the keys merely due (``changed=False``) when something changed."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        priority = CHANGED if changed else DUE
        if key in self._running:
            self._dirty.add(key)
        elif priority < self._queued.get(key, DUE + 1):
            if not self._queued:
                self._progress_at = time.monotonic()
            self._queued[key] = priority
            self._queue.put_nowait((priority, next(self._arrivals), key))
            self._stop_aging(key)  # promoted, or due anew: its own clock
            if priority == DUE:
                self._aging[key] = asyncio.get_running_loop().call_later(
                    DUE_AGING_SECONDS, self._aged, key)

    def _aged(self, key: str) -> None:
        """A key due this long joins the changed ones (see the module's docstring).
        Its DUE entry, left behind, is skipped as a promoted key's is."""
        self._aging.pop(key, None)
        if self._queued.get(key) == DUE:
            self._queued[key] = CHANGED
            self._queue.put_nowait((CHANGED, next(self._arrivals), key))

    def _stop_aging(self, key: str) -> None:
        handle = self._aging.pop(key, None)
        if handle is not None:
            handle.cancel()

    def add_after(self, key: str, delay: float) -> None:
        """Reconcile ``key`` in ``delay`` seconds unless something enqueues it earlier."""
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        due = loop.time() + delay
        if existing is not None and existing.when() <= due:
            return
        if existing is not None:
            existing.cancel()
        self._timers[key] = loop.call_at(due, self._fire, key)

    def forget(self, key: str) -> None:
        """The object is gone: drop pending timers (a queued run finds it gone)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._dirty.discard(key)

    def clear(self) -> None:
        """Drop every queued key, timer and rerun; a running reconcile finishes (threads
        cannot be interrupted) but is not repeated unless added again."""
        for handle in [*self._timers.values(), *self._aging.values()]:
            handle.cancel()
        self._timers.clear()
        self._aging.clear()
        self._dirty.clear()
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queued.clear()

    def pending(self) -> int:
        return len(self._queued) + len(self._running)

    def wedged(self, after: float) -> str | None:
        """Why this queue has made no progress for ``after`` seconds, or None.

        Progress is a reconcile finishing. A queue with keys waiting and none
        finished for that long is wedged (every worker stuck, or none running);
        so is one reconcile running for that long, whatever the others do. An
        idle queue is fine however long it is idle.
        """
        now = time.monotonic()
        if self._queued and now - self._progress_at > after:
            return (f"{len(self._queued)} keys waiting and no reconcile finished for "
                    f"{now - self._progress_at:.0f}s")
        oldest = min(self._running.items(), key=lambda item: item[1], default=None)
        if oldest is not None and now - oldest[1] > after:
            return f"the reconcile of {oldest[0]} has been running for {now - oldest[1]:.0f}s"
        return None

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key, changed=False)

    async def _work(self) -> None:
        while True:
            priority, _, key = await self._queue.get()
            if self._queued.get(key) != priority:
                continue  # promoted (its CHANGED entry runs it), or cleared
            del self._queued[key]
            self._stop_aging(key)
            started = time.monotonic()
            self._running[key] = started
            try:
                again = await self.reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bug, not an expected failure: log it and retry later
                # rather than lose the key.
                logger.exception("reconcile of %s failed unexpectedly", key)
                again = 30.0
            finally:
                self._running.pop(key, None)
                self._progress_at = time.monotonic()
                self.runs += 1
            logger.debug("reconciled %s in %.3fs", key, time.monotonic() - started)
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
            elif again is not None:
                self.add_after(key, spread(again))
