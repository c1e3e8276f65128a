"""A Controller of a replica that kopf paused reconciles nothing and forgets everything."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stackforge_operator.controller import Controller


@dataclass
class Done:
    requeue_after: float = 0.05
    latest: dict[str, Any] | None = None


def body(name: str, generation: int = 1) -> dict[str, Any]:
    return {"metadata": {"name": name, "generation": generation}, "status": {"g": generation}}


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.release = threading.Event()
        self.release.set()
        self.observed: list[str] = []
        self.forgotten: list[str] = []

    def reconcile(self, obj: Mapping[str, Any]) -> Done:
        self.release.wait(5)
        self.calls.append(obj["metadata"]["name"])
        return Done(latest=dict(obj))


def make(rec: Recorder, active: list[bool]) -> Controller:
    return Controller("Thing", rec.reconcile, workers=2, stalled_seconds=1.0,
                      observe=lambda key, _: rec.observed.append(key),
                      forget=rec.forgotten.append, is_active=lambda: active[0])


def test_active_controller_reconciles_and_resyncs() -> None:
    rec, active = Recorder(), [True]

    async def scenario() -> None:
        c = make(rec, active)
        c.start()
        c.observed(body("a"))
        await asyncio.sleep(0.3)
        await c.stop()

    asyncio.run(scenario())
    assert rec.calls.count("a") >= 3  # first run plus resyncs every 0.05 s


def test_paused_controller_ignores_events_and_stops_resyncing() -> None:
    rec, active = Recorder(), [True]

    async def scenario() -> None:
        c = make(rec, active)
        c.start()
        c.observed(body("a"))
        c.observed(body("b"))
        await asyncio.sleep(0.2)
        active[0] = False
        assert c.stand_by() == 2
        assert c.keys() == [] and sorted(rec.forgotten) == ["a", "b"]
        before = len(rec.calls)
        c.observed(body("c"))  # an event kopf let through while pausing
        c.poke("a")
        await asyncio.sleep(0.3)
        assert len(rec.calls) == before and c.keys() == []
        # Resumed: kopf re-lists, and only what it lists is reconciled.
        active[0] = True
        c.observed(body("b", generation=2))
        await asyncio.sleep(0.1)
        assert rec.calls[before:] and set(rec.calls[before:]) == {"b"}
        assert c.body("b") is not None and c.body("b")["metadata"]["generation"] == 2  # type: ignore[index]
        await c.stop()

    asyncio.run(scenario())


def test_a_reconcile_running_when_paused_is_not_repeated_or_remembered() -> None:
    rec, active = Recorder(), [True]

    async def scenario() -> None:
        c = make(rec, active)
        c.start()
        rec.release.clear()
        c.observed(body("a"))
        await asyncio.sleep(0.05)  # "a" is in its reconcile thread now
        active[0] = False
        c.stand_by()
        rec.forgotten.clear()
        rec.observed.clear()
        rec.release.set()
        await asyncio.sleep(0.3)
        assert rec.calls == ["a"]  # finished, never resynced
        assert c.keys() == [] and rec.observed == []  # its status series not brought back
        assert c.queue.pending() == 0
        await c.stop()

    asyncio.run(scenario())


def test_every_watch_event_is_counted_even_on_a_paused_replica() -> None:
    from stackforge_operator.metrics import METRICS

    def events() -> float:
        return METRICS.registry.get_sample_value(
            "stackforge_watch_events_total", {"kind": "Counted"}) or 0.0

    rec, active = Recorder(), [False]
    c = Controller("Counted", rec.reconcile, workers=1, is_active=lambda: active[0])
    before = events()
    c.observed(body("a"))  # paused: not reconciled, still a sign of a live watch
    active[0] = True
    c.observed(body("a", generation=2))
    c.deleted(body("a"))
    assert events() - before == 3


def test_an_unchanged_version_is_due_and_a_new_one_urgent() -> None:
    """kopf re-lists every object when a watch resumes: those, like the echo of the
    status the operator wrote, must not crowd out what really changed."""
    rec, active = Recorder(), [True]
    c = Controller("Versions", rec.reconcile, workers=1, is_active=lambda: active[0])
    added: list[tuple[str, bool]] = []
    c.queue.add = lambda key, *, changed=True: added.append((key, changed))  # type: ignore[method-assign]

    def versioned(name: str, version: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "resourceVersion": version}}

    c.observed(versioned("a", "1"))  # new
    c.observed(versioned("a", "1"))  # re-listed
    c.observed(versioned("a", "2"))  # changed
    c.poke("a", changed=False)  # a child listed again
    c.poke("a")  # a child moved
    assert added == [("a", True), ("a", False), ("a", True), ("a", False), ("a", True)]
