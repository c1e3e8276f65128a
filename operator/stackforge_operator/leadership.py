"""Whether this replica may reconcile now: exactly when kopf is not paused.

With peering, kopf pauses a replica that sees a live peer of higher (or the
same) priority: it closes its watch streams and stops delivering events. Our
controllers reconcile from their own queues and timers, so a paused replica
would keep resyncing the objects it already knows: two active reconcilers.

kopf keeps its pause state in one object, the ``operator_paused`` toggle set
that every watch stream waits on (on when any blocker is on: a live peer of
higher or equal priority, a missing peering CRD). It is not handed to
handlers, so :func:`install` records it where kopf's run passes it to its
orchestrator, and :class:`Leadership` reads that very object. Our gate and
kopf's watchers therefore never disagree: no second opinion computed from the
peering object, no race between two watchers of it.

That seam is kopf-internal (``kopf._core.reactor.orchestration.orchestrator``,
kopf 1.44+); :func:`install` checks it and a unit test pins it, and a replica
started with peering refuses to run if the seam is missing (handlers.py)
rather than reconcile ungated.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import weakref
from collections.abc import Callable
from typing import Any, Protocol

# How often to look again while kopf's orchestrator has not set up its
# toggles yet (a fraction of a second at start-up; kopf watches nothing then).
STARTING_POLL_SECONDS = 0.1
# How often `follow` looks again without a toggle flipping.
RECHECK_SECONDS = 1.0


class PauseToggles(Protocol):
    """What we use of kopf's ``aiotoggles.ToggleSet``."""

    def __len__(self) -> int: ...

    def is_on(self) -> bool: ...

    async def wait_for(self, state: bool, /) -> None: ...


# The toggle set of the kopf run in each event loop (one operator per loop).
_recorded: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PauseToggles] = (
    weakref.WeakKeyDictionary()
)
_MARK = "_stackforge_records_pause"


def install() -> bool:
    """Make kopf's runs record their pause toggles; False if this kopf has no such seam."""
    try:
        from kopf._core.reactor import orchestration
    except ImportError:
        return False
    original = getattr(orchestration, "orchestrator", None)
    if getattr(original, _MARK, False):
        return True
    if original is None or "operator_paused" not in inspect.signature(original).parameters:
        return False

    @functools.wraps(original)
    def orchestrator(*args: Any, **kwargs: Any) -> Any:
        # Called (not awaited) by kopf's spawn_tasks inside the running loop,
        # before the startup handlers run: record, then hand over unchanged.
        paused = kwargs.get("operator_paused")
        if paused is not None:
            _recorded[asyncio.get_running_loop()] = paused
        return original(*args, **kwargs)

    setattr(orchestrator, _MARK, True)
    orchestration.orchestrator = orchestrator
    return True


def recorded_toggles() -> PauseToggles | None:
    """kopf's pause toggles for the operator running in this event loop, if recorded."""
    return _recorded.get(asyncio.get_running_loop())


class Leadership:
    """The gate the controllers consult before every reconcile.

    ``toggles`` None (kopf without the seam, allowed only standalone): always
    active. ``peering`` (mandatory peering, ``--peering NAME``): kopf's
    orchestrator first adds its "peering CRD is missing" toggle (off), and only
    later, before starting any watch stream, one toggle per peering object,
    switched on until kopf has read that object. In between, the set looks
    "not paused" although kopf has not decided yet, so with peering the gate
    waits for that second toggle. Nothing is watched (so nothing reconciled)
    in that window either way; this keeps the gate, its log line and
    ``stackforge_active`` from claiming leadership for a moment.
    """

    def __init__(self, toggles: PauseToggles | None, *, peering: bool = False) -> None:
        self._toggles = toggles
        self._decided = 2 if peering else 1

    @property
    def decided(self) -> bool:
        """kopf has set up its pause toggles (before it, it watches nothing)."""
        return self._toggles is None or len(self._toggles) >= self._decided

    @property
    def active(self) -> bool:
        if self._toggles is None:
            return True
        return self.decided and not self._toggles.is_on()

    async def follow(self, on_change: Callable[[bool], None]) -> None:
        """Call ``on_change(active)`` once kopf has decided, then on every change."""
        toggles = self._toggles
        if toggles is None:
            on_change(True)
            await asyncio.Event().wait()  # never changes
            return
        last: bool | None = None
        while True:
            decided = self.decided
            if decided or last is not None:
                now = self.active
                if now != last:
                    on_change(now)
                    last = now
            if not decided:
                # Start-up, or kopf dropped a peering (its CRD deleted): poll.
                await asyncio.sleep(STARTING_POLL_SECONDS)
                continue
            # Active: wait until paused (on); paused: until resumed (off). Bounded,
            # because a toggle kopf drops changes `decided` without any of them
            # flipping. (The controllers ask `active` itself, which is always exact.)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECHECK_SECONDS):
                    await toggles.wait_for(last is True)
