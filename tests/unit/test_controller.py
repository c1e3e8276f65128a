"""A Controller of a replica that kopf paused reconciles nothing and forgets everything."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf
import pytest

from stackforge_operator import watch_cache
from stackforge_operator.controller import Controller, WriteThenError


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
        self.entered = threading.Event()
        self.observed: list[str] = []
        self.forgotten: list[str] = []

    def reconcile(self, obj: Mapping[str, Any]) -> Done:
        self.entered.set()
        self.release.wait(5)
        self.calls.append(obj["metadata"]["name"])
        return Done(latest=dict(obj))


def make(rec: Recorder, active: list[bool]) -> Controller:
    return Controller("Thing", rec.reconcile, workers=2, stalled_seconds=1.0,
                      observe=lambda key, _: rec.observed.append(key),
                      forget=rec.forgotten.append, is_active=lambda: active[0])


async def until(holds: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for ``holds()`` (a slow, busy machine must not fail a test of order)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not holds():
        assert asyncio.get_running_loop().time() < deadline, "never held"
        await asyncio.sleep(0.01)


def test_active_controller_reconciles_and_resyncs() -> None:
    rec, active = Recorder(), [True]

    async def scenario() -> None:
        c = make(rec, active)
        c.start()
        c.observed(body("a"))
        # The first run plus resyncs every 0.05 s (waited for, not slept: a busy
        # machine's threads may take longer than a fixed 0.3 s for three runs).
        await until(lambda: rec.calls.count("a") >= 3)
        await c.stop()

    asyncio.run(scenario())
    assert rec.calls.count("a") >= 3


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
        # A reconcile already in its thread when paused finishes (threads cannot be
        # interrupted; the next test shows it is not repeated): count from after it.
        await until(lambda: c.queue.pending() == 0)
        before = len(rec.calls)
        c.observed(body("c"))  # an event kopf let through while pausing
        c.poke("a")
        await asyncio.sleep(0.3)
        assert len(rec.calls) == before and c.keys() == []
        # Resumed: kopf re-lists, and only what it lists is reconciled.
        active[0] = True
        c.observed(body("b", generation=2))
        await until(lambda: len(rec.calls) > before)
        assert set(rec.calls[before:]) == {"b"}
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
        await until(rec.entered.is_set)  # "a" is in its reconcile thread now
        active[0] = False
        c.stand_by()
        rec.forgotten.clear()
        rec.observed.clear()
        rec.release.set()
        await until(lambda: c.queue.pending() == 0)
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


@dataclass
class Quiet:
    requeue_after: float = 0.02
    latest: dict[str, Any] | None = None
    quiet_seconds: float | None = 60.0


def skipped(kind: str) -> float:
    from stackforge_operator.metrics import METRICS

    return METRICS.registry.get_sample_value(
        "stackforge_resyncs_skipped_total", {"kind": kind}) or 0.0


def run_for(c: Controller, seconds: float, *then: Any) -> None:
    async def scenario() -> None:
        c.start()
        c.observed(body("a"))
        await asyncio.sleep(seconds)
        for step in then:
            step()
            await asyncio.sleep(seconds)
        await c.stop()

    asyncio.run(scenario())


def test_a_settled_object_waits_without_resyncs_until_a_change_to_its_inputs_wakes_it(
) -> None:
    calls: list[str] = []
    token = ["t1"]

    def reconcile(obj: Mapping[str, Any]) -> Quiet:
        calls.append(obj["metadata"]["name"])
        return Quiet()

    c = Controller("Settles", reconcile, workers=1, inputs_token=lambda _: token[0])
    before = skipped("Settles")

    def woken_unchanged() -> None:
        # Its requeue_after (0.02 s) is not used: no resync ran, none was skipped.
        assert calls == ["a"]
        assert skipped("Settles") == before
        c.wake_namespace("")  # a change elsewhere in its namespace: token unchanged

    def inputs_moved() -> None:
        assert calls == ["a"]
        assert skipped("Settles") - before == 1
        token[0] = "t2"
        c.wake_namespace("")

    run_for(c, 0.2, woken_unchanged, inputs_moved)
    assert calls == ["a", "a"]  # once more for the new token, then settled again
    assert skipped("Settles") - before == 1


def test_a_wake_reaches_only_the_settled_objects_of_its_namespace() -> None:
    calls: list[str] = []
    token = ["t1"]

    def reconcile(obj: Mapping[str, Any]) -> Quiet:
        calls.append(f"{obj['metadata']['namespace']}/{obj['metadata']['name']}")
        return Quiet()

    c = Controller("Namespaced", reconcile, workers=1, inputs_token=lambda _: token[0])

    def in_namespace(namespace: str) -> dict[str, Any]:
        found = body("t")
        found["metadata"]["namespace"] = namespace
        return found

    async def scenario() -> None:
        c.start()
        c.observed(in_namespace("one"))
        c.observed(in_namespace("two"))
        await asyncio.sleep(0.1)
        token[0] = "t2"
        c.wake_namespace("one")
        await asyncio.sleep(0.1)
        assert sorted(calls) == ["one/t", "one/t", "two/t"]
        token[0] = "t3"
        c.wake_namespace(None)  # a new LIST
        await asyncio.sleep(0.1)
        token[0] = "t4"
        c.wake_namespace(watch_cache.EVERY_NAMESPACE)  # a CRD installed, say
        await asyncio.sleep(0.1)
        await c.stop()

    asyncio.run(scenario())
    assert sorted(calls) == ["one/t"] * 4 + ["two/t"] * 3


def test_an_object_whose_inputs_moved_during_its_reconcile_is_not_settled() -> None:
    calls: list[str] = []
    token = ["t1"]

    def reconcile(obj: Mapping[str, Any]) -> Quiet:
        calls.append(obj["metadata"]["name"])
        if len(calls) == 1:
            # A change while it reads: the wake finds it unsettled, so only its
            # resync timer can bring it back.
            token[0] = "t2"
        return Quiet()

    run_for(Controller("Moved", reconcile, workers=1, inputs_token=lambda _: token[0]), 0.3)
    assert calls == ["a", "a"]  # the resync after 0.02 s, which then settled


def test_settled_lasts_only_as_long_as_the_reconcile_said() -> None:
    calls: list[str] = []

    def reconcile(obj: Mapping[str, Any]) -> Quiet:
        calls.append(obj["metadata"]["name"])
        return Quiet(quiet_seconds=0.1)

    run_for(Controller("Expires", reconcile, workers=1, inputs_token=lambda _: "same"), 0.55)
    assert 3 <= len(calls) <= 6  # every 0.1 s, not every 0.02 s


def test_nothing_is_skipped_without_a_token_a_quiet_time_or_after_a_write() -> None:
    for name, token, outcome in (
            ("NoToken", None, Quiet()),                   # no synced caches vouch
            ("NoQuiet", "same", Quiet(quiet_seconds=None)),  # converging, or a change due
            ("Wrote", "same", Quiet(latest={"metadata": {"name": "a"}}))):  # its own write
        calls: list[str] = []

        def reconcile(obj: Mapping[str, Any], outcome: Quiet = outcome,
                      calls: list[str] = calls) -> Quiet:
            calls.append(obj["metadata"]["name"])
            return outcome

        def inputs_token(_: Mapping[str, Any], token: str | None = token) -> str | None:
            return token

        run_for(Controller(name, reconcile, workers=1, inputs_token=inputs_token), 0.3)
        assert len(calls) >= 5, name
        assert skipped(name) == 0, name


def test_an_object_made_again_after_its_deletion_is_reconciled_again() -> None:
    calls: list[str] = []

    def reconcile(obj: Mapping[str, Any]) -> Quiet:
        calls.append(obj["metadata"]["name"])
        return Quiet()

    c = Controller("Remade", reconcile, workers=1, inputs_token=lambda _: "same")

    def delete() -> None:
        c.deleted(body("a"))

    def make_again() -> None:
        c.observed(body("a"))

    run_for(c, 0.1, delete, make_again)
    assert calls == ["a", "a"]  # its settled record went with it


def incarnation(uid: str, *, deleting: bool = False, version: str = "1") -> dict[str, Any]:
    """Object "a" as one of its incarnations (kopf handles each uid's events apart)."""
    meta: dict[str, Any] = {"name": "a", "uid": uid, "resourceVersion": version}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-05T23:55:52Z"
    return {"metadata": meta, "spec": {"made": uid}}


def test_an_object_made_again_is_kept_when_its_old_selfs_deletion_comes_after() -> None:
    """Seen in CI: a tenant deleted and applied again at once was never reconciled,
    because its old self's DELETED was handled after the new one's ADDED."""
    made: list[str] = []
    rec = Recorder()

    def reconcile(obj: Mapping[str, Any]) -> Done:
        made.append(obj["spec"]["made"])
        return Done(requeue_after=60.0)

    c = Controller("Remade", reconcile, workers=1, forget=rec.forgotten.append)

    async def scenario() -> None:
        c.start()
        c.observed(incarnation("old"))
        await until(lambda: made == ["old"])
        c.observed(incarnation("old", deleting=True, version="2"))
        c.observed(incarnation("new", version="3"))
        # The old one's last events, late: neither replaces nor forgets the new one.
        c.observed(incarnation("old", deleting=True, version="2"))
        c.deleted(incarnation("old", deleting=True, version="2"))
        c.observed(incarnation("old", version="1"))
        await until(lambda: made[-1:] == ["new"])
        await asyncio.sleep(0.1)
        await c.stop()

    asyncio.run(scenario())
    assert made == ["old", "new"]
    assert c.keys() == ["a"] and (c.body("a") or {})["spec"] == {"made": "new"}
    assert rec.forgotten == []
    # The new one's own deletion forgets it, as before.
    c.deleted(incarnation("new", version="4"))
    assert c.keys() == [] and rec.forgotten == ["a"]


def test_a_deletion_of_another_incarnation_than_the_one_held_forgets_nothing() -> None:
    rec = Recorder()
    c = Controller("Remade", rec.reconcile, workers=1, forget=rec.forgotten.append)
    c.observed(incarnation("current"))
    c.deleted(incarnation("never-seen"))
    assert c.keys() == ["a"] and rec.forgotten == []
    c.deleted(incarnation("current"))
    assert c.keys() == [] and rec.forgotten == ["a"]
    # Late news of a deleted incarnation does not bring it back.
    c.observed(incarnation("current", version="9"))
    assert c.keys() == []


def test_each_reconcile_reads_a_private_copy_of_the_latest_body_without_managed_fields() -> None:
    """Bodies are held packed: what one reconcile changes in its copy never reaches
    the next, and the status a reconcile wrote is what the next one starts from."""
    seen: list[Mapping[str, Any]] = []
    statuses: list[Any] = []

    def reconcile(obj: Mapping[str, Any]) -> Done:
        seen.append(obj)
        statuses.append(obj["status"]["g"])
        obj["status"]["g"] = "scribbled"
        # Only the first run writes: the later ones read what the controller held
        # since, which a scribble on a shared body would have changed.
        written = {"metadata": {"name": "a", "resourceVersion": "2"},
                   "status": {"g": "written"}} if len(seen) == 1 else None
        return Done(requeue_after=0.02, latest=written)

    c = Controller("Private", reconcile, workers=1)
    with_fields = {**body("a"), "metadata": {"name": "a", "resourceVersion": "1",
                                             "managedFields": [{"manager": "kubectl"}]}}

    async def scenario() -> None:
        c.start()
        c.observed(with_fields)
        await until(lambda: len(seen) >= 3)
        await c.stop()

    asyncio.run(scenario())
    assert "managedFields" not in seen[0]["metadata"]
    assert with_fields["status"] == {"g": 1}  # the watch's own dict is untouched
    assert statuses[:3] == [1, "written", "written"]
    assert len({id(s) for s in seen}) == len(seen)
    assert c.body("a") is not c.body("a")


def _phase(version: str, phase: str, uid: str = "u1") -> dict[str, Any]:
    return {"metadata": {"name": "a", "uid": uid, "resourceVersion": version},
            "status": {"phase": phase}}


def test_an_event_older_than_the_body_held_is_not_taken() -> None:
    """The late echo of an earlier status write must not hand the next reconcile a
    status the operator has moved past (a recovery's phase acted on twice)."""
    c = Controller("Echoes", lambda _: Done(), workers=1)
    added: list[tuple[str, bool]] = []
    c.queue.add = lambda key, *, changed=True: added.append((key, changed))  # type: ignore[method-assign]
    c.observed(_phase("7", "RollingBack"))
    c.observed(_phase("5", "Verifying"))  # the echo of the write before
    assert (c.body("a") or {})["status"] == {"phase": "RollingBack"}
    assert added == [("a", True)]
    c.observed(_phase("8", "Failed"))  # a newer one is taken
    assert (c.body("a") or {})["status"] == {"phase": "Failed"}
    # Another object of the same name is taken whatever its version.
    c.observed(_phase("3", "Restoring", uid="u2"))
    assert (c.body("a") or {})["status"] == {"phase": "Restoring"}


def test_a_reconciles_write_is_kept_over_an_older_event_that_came_during_it() -> None:
    """Reconcile B writes RollingBack (version 7) while the echo of the previous
    write (Verifying, version 6) arrives: the next reconcile starts from 7."""
    phases: list[str] = []
    inside = threading.Event()
    proceed = threading.Event()

    def reconcile(obj: Mapping[str, Any]) -> Done:
        phases.append(obj["status"]["phase"])
        if len(phases) == 1:
            inside.set()
            proceed.wait(5)
            return Done(requeue_after=0.02, latest=_phase("7", "RollingBack"))
        return Done(requeue_after=0.02)

    c = Controller("Latest", reconcile, workers=1)

    async def scenario() -> None:
        c.start()
        c.observed(_phase("5", "Verifying"))
        await until(inside.is_set)
        c.observed(_phase("6", "Verifying"))  # newer than held, older than the write
        proceed.set()
        await until(lambda: len(phases) >= 2)
        await c.stop()

    asyncio.run(scenario())
    assert phases[:2] == ["Verifying", "RollingBack"]


def test_a_reconcile_that_fails_after_its_write_is_retried_from_what_it_wrote() -> None:
    """A drill's run recorded as started, then a 503 while its sandbox is made:
    the retry, ahead of the watch's echo, must see the run, not start another."""
    phases: list[str] = []

    def reconcile(obj: Mapping[str, Any]) -> Done:
        phases.append(obj["status"]["phase"])
        if len(phases) == 1:
            raise WriteThenError(kopf.TemporaryError("the API server said 503", delay=0.02),
                                 _phase("6", "Running"))
        return Done(requeue_after=0.02)

    c = Controller("Drills", reconcile, workers=1)

    async def scenario() -> None:
        c.start()
        c.observed(_phase("5", "Idle"))
        await until(lambda: len(phases) >= 2)
        await c.stop()

    asyncio.run(scenario())
    assert phases[:2] == ["Idle", "Running"]


def test_poke_namespace_looks_again_at_every_object_there_now_settled_or_not() -> None:
    """A tenant's isolation turned on: its BackupPolicies (there, some settled, some
    with a resync a minute away) must cut their egress now."""
    calls: list[str] = []

    def reconcile(obj: Mapping[str, Any]) -> Done:
        calls.append(f"{obj['metadata']['namespace']}/{obj['metadata']['name']}")
        return Done(requeue_after=60.0)

    c = Controller("Policy", reconcile, workers=1)

    def in_namespace(namespace: str, name: str) -> dict[str, Any]:
        found = body(name)
        found["metadata"]["namespace"] = namespace
        return found

    async def scenario() -> None:
        c.start()
        for namespace, name in (("one", "nightly"), ("one", "hourly"), ("two", "nightly")):
            c.observed(in_namespace(namespace, name))
        await until(lambda: len(calls) == 3)
        c.poke_namespace("one")
        await until(lambda: len(calls) == 5)
        await asyncio.sleep(0.1)
        await c.stop()

    asyncio.run(scenario())
    assert sorted(calls[3:]) == ["one/hourly", "one/nightly"]
    assert len(calls) == 5


def test_consecutive_failures_of_an_object_back_off_and_a_success_starts_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With fixed delays a thousand tenants retried every 5 s through an API server
    outage, and an object failing for good every 5 s for ever. The runs are asked of
    the controller one by one (the delays, not a clock, are what is checked)."""
    from stackforge_operator import config

    monkeypatch.setattr(config, "RETRY_MAX_SECONDS", 4.0)
    answers: list[Exception | None] = [
        kopf.TemporaryError("conflict", delay=1), kopf.TemporaryError("conflict", delay=1),
        kopf.TemporaryError("conflict", delay=1), kopf.TemporaryError("conflict", delay=1),
        None,
        kopf.TemporaryError("forbidden", delay=60),
        kopf.TemporaryError("forbidden", delay=60),
        RuntimeError("a bug"), RuntimeError("a bug"),
        kopf.PermanentError("bad spec"),
        kopf.TemporaryError("conflict", delay=1),
    ]

    def reconcile(_obj: Mapping[str, Any]) -> Done:
        answer = answers.pop(0)
        if answer is not None:
            raise answer
        return Done(requeue_after=7.0)

    c = Controller("Things", reconcile, workers=1, stalled_seconds=99.0)

    async def scenario() -> list[float | None]:
        c.observed(body("a"))
        return [await c._reconcile("a") for _ in range(11)]

    monkeypatch.setattr(config, "UNEXPECTED_RETRY_SECONDS", 3.0)
    delays = asyncio.run(scenario())
    assert delays == [1.0, 2.0, 4.0, 4.0,  # doubled up to the cap
                      7.0,  # a success: the count starts again
                      60.0, 60.0,  # the error asks more than the cap: never less
                      4.0, 4.0,  # unexpected (3 s) after two failures: 12, capped
                      99.0,  # stalled for a human
                      1.0]  # and the count started again


def test_a_deleted_object_forgets_its_failures() -> None:
    failing = [True]

    def reconcile(_obj: Mapping[str, Any]) -> Done:
        if failing[0]:
            raise kopf.TemporaryError("conflict", delay=1)
        return Done()

    c = Controller("Things", reconcile, workers=1)

    async def scenario() -> list[float | None]:
        c.observed(body("a"))
        first = [await c._reconcile("a") for _ in range(3)]
        c.deleted(body("a"))
        c.observed(body("a", generation=2))
        return [*first, await c._reconcile("a")]

    assert asyncio.run(scenario()) == [1.0, 2.0, 4.0, 1.0]


def test_a_failing_object_is_woken_when_the_caches_list_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf resumes its watch where it was after an outage, without listing: a
    failing object waited out its whole backoff (minutes) after the API server
    was back. The watch caches list again then, which wakes it."""
    from stackforge_operator import config

    monkeypatch.setattr(config, "RETRY_MAX_SECONDS", 600.0)
    calls: list[str] = []
    failing = [True]

    def reconcile(obj: Mapping[str, Any]) -> Done:
        calls.append(obj["metadata"]["name"])
        if failing[0]:
            raise kopf.TemporaryError("the API server is away", delay=300)
        return Done(requeue_after=600.0)

    c = Controller("Things", reconcile, workers=1)

    async def scenario() -> None:
        c.start()
        c.observed({"metadata": {"name": "a", "namespace": "shop", "uid": "u1"}})
        await until(lambda: len(calls) == 1)
        await asyncio.sleep(0.1)
        assert len(calls) == 1  # waiting out its 300 s
        c.wake_namespace("elsewhere")
        await asyncio.sleep(0.1)
        assert len(calls) == 1
        # A change in its own namespace may be its own writes' echo: not woken.
        c.wake_namespace("shop")
        await asyncio.sleep(0.1)
        assert len(calls) == 1
        # An add-on's CRDs installed (hundreds, each with status updates) ended
        # its backoff each time: not any more, only the settled are looked at.
        c.wake_namespace(watch_cache.EVERY_NAMESPACE)
        await asyncio.sleep(0.1)
        assert len(calls) == 1
        c.wake_namespace(None)  # a cache listed again: the API server answers
        await until(lambda: len(calls) == 2)
        failing[0] = False
        c.wake_namespace(None)
        await until(lambda: len(calls) == 3)
        # Succeeded: no longer failing, so a wake leaves it to its resync.
        c.wake_namespace(None)
        await asyncio.sleep(0.1)
        assert len(calls) == 3
        await c.stop()

    asyncio.run(scenario())


def test_an_object_made_again_does_not_inherit_its_old_selfs_failures() -> None:
    """The new object's event came before the old one's deletion: its first failure
    waited as long as the old object's tenth."""
    def reconcile(_obj: Mapping[str, Any]) -> Done:
        raise kopf.TemporaryError("conflict", delay=1)

    c = Controller("Things", reconcile, workers=1)

    async def scenario() -> list[float | None]:
        old = {"metadata": {"name": "a", "uid": "old"}}
        c.observed(old)
        first = [await c._reconcile("a") for _ in range(3)]
        c.observed({"metadata": {"name": "a", "uid": "new"}})
        c.deleted(old)  # late: changes nothing for the new object
        return [*first, await c._reconcile("a")]

    assert asyncio.run(scenario()) == [1.0, 2.0, 4.0, 1.0]


def reconciles(kind: str, result: str) -> float:
    from stackforge_operator.metrics import METRICS

    return METRICS.registry.get_sample_value(
        "stackforge_reconciles_total", {"kind": kind, "result": result}) or 0.0


def test_an_outcome_without_progress_is_counted_by_the_status_it_left() -> None:
    """Policies' and drills' outcomes name no progress: every one of their reconciles,
    stalled or waiting, was counted "ready"."""
    def conditions(**true: bool) -> dict[str, Any]:
        return {"status": {"conditions": [
            {"type": t, "status": "True" if v else "False"} for t, v in true.items()]}}

    left = {"a": conditions(Ready=False, Stalled=True),
            "b": conditions(Ready=False, Stalled=False, Reconciling=True),
            "c": conditions(Ready=True, Stalled=False)}

    def reconcile(obj: Mapping[str, Any]) -> Done:
        return Done(requeue_after=60, latest={**obj, **left[obj["metadata"]["name"]]})

    before = {r: reconciles("Policyish", r) for r in ("stalled", "reconciling", "ready")}
    c = Controller("Policyish", reconcile, workers=1, stalled_seconds=1.0,
                   observe=lambda *_: None, forget=lambda *_: None, is_active=lambda: True)

    async def scenario() -> None:
        c.start()
        for name in left:
            c.observed(body(name))
        await until(lambda: sum(reconciles("Policyish", r) - before[r] for r in before) == 3)
        await c.stop()

    asyncio.run(scenario())
    assert {r: reconciles("Policyish", r) - before[r] for r in before} == {
        "stalled": 1, "reconciling": 1, "ready": 1}
