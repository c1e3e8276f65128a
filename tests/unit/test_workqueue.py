from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from stackforge_operator import workqueue
from stackforge_operator.workqueue import WorkQueue


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_bursts_collapse_and_keys_never_run_concurrently() -> None:
    calls: Counter[str] = Counter()
    active: set[str] = set()
    overlaps: list[str] = []

    async def reconcile(key: str) -> float | None:
        if key in active:
            overlaps.append(key)
        active.add(key)
        calls[key] += 1
        await asyncio.sleep(0.05)
        active.discard(key)
        return None

    async def scenario() -> None:
        queue = WorkQueue(reconcile, workers=4)
        queue.start()
        for _ in range(10):
            queue.add("a")
        queue.add("b")
        await asyncio.sleep(0.01)
        # "a" is running now: more events make exactly one more run.
        for _ in range(5):
            queue.add("a")
        await asyncio.sleep(0.3)
        await queue.stop()

    run(scenario())
    assert overlaps == []
    assert calls == {"a": 2, "b": 1}


def test_returned_delay_schedules_the_next_run() -> None:
    times: list[float] = []

    async def reconcile(key: str) -> float | None:
        times.append(asyncio.get_running_loop().time())
        return 0.05 if len(times) < 3 else None

    async def scenario() -> None:
        queue = WorkQueue(reconcile, workers=1)
        queue.start()
        queue.add("a")
        await asyncio.sleep(0.4)
        await queue.stop()

    run(scenario())
    assert len(times) == 3
    assert all(b - a >= 0.04 for a, b in itertools.pairwise(times))


def test_an_event_overrides_a_later_timer_and_forget_cancels() -> None:
    calls: Counter[str] = Counter()

    async def reconcile(key: str) -> float | None:
        calls[key] += 1
        return 60.0

    async def scenario() -> None:
        queue = WorkQueue(reconcile, workers=1)
        queue.start()
        queue.add("a")
        await asyncio.sleep(0.05)
        queue.add("a")  # an event: runs now, not in 60 s
        await asyncio.sleep(0.05)
        queue.forget("a")
        await asyncio.sleep(0.05)
        assert queue._timers == {}
        await queue.stop()

    run(scenario())
    assert calls["a"] == 2


def test_an_unexpected_exception_does_not_lose_the_key() -> None:
    calls: Counter[str] = Counter()

    async def reconcile(key: str) -> float | None:
        calls[key] += 1
        if calls[key] == 1:
            raise RuntimeError("bug")
        return None

    async def scenario() -> None:
        queue = WorkQueue(reconcile, workers=1)
        queue.start()
        queue.add("a")
        await asyncio.sleep(0.05)
        assert "a" in queue._timers  # retried later
        queue.add("a")
        await asyncio.sleep(0.05)
        await queue.stop()

    run(scenario())
    assert calls["a"] == 2


def test_clear_drops_queued_keys_timers_and_reruns() -> None:
    calls: Counter[str] = Counter()

    async def reconcile(key: str) -> float | None:
        calls[key] += 1
        await asyncio.sleep(0.05)
        return 0.05  # resync soon

    async def scenario() -> None:
        queue = WorkQueue(reconcile, workers=1)
        queue.start()
        for key in ("a", "b", "c"):
            queue.add(key)
        await asyncio.sleep(0.01)  # "a" runs; "b", "c" wait
        queue.add("a")  # a rerun of the running key
        queue.clear()
        await asyncio.sleep(0.3)
        await queue.stop()

    run(scenario())
    # What waited is gone. The running key finishes, and its own outcome decides
    # what follows (a paused Controller returns None there: no resync).
    assert calls["b"] == calls["c"] == 0
    assert calls["a"] >= 1


def held_until(release: asyncio.Event) -> Callable[[str], Awaitable[float | None]]:
    """A reconcile that runs until ``release`` is set, then asks for nothing more."""
    async def reconcile(key: str) -> float | None:
        await release.wait()
        return None

    return reconcile


def test_a_queue_whose_workers_are_stuck_is_reported_wedged_and_recovers() -> None:
    """What the liveness probe reads: keys waiting and nothing finishing (one worker,
    blocked on an event no one sets) is wedged; so is one reconcile running too long;
    an idle queue never is."""
    release = asyncio.Event()
    reports: list[str | None] = []

    async def reconcile(key: str) -> float | None:
        if key == "stuck":
            await release.wait()
        return None

    async def scenario() -> None:
        queue = WorkQueue(reconcile, workers=1)
        queue.start()
        await asyncio.sleep(0.3)
        reports.append(queue.wedged(0.2))  # idle for longer than the bound: fine
        queue.add("stuck")
        await asyncio.sleep(0.05)
        reports.append(queue.wedged(0.2))  # running, not for long yet
        queue.add("waiting")
        await asyncio.sleep(0.3)
        reports.append(queue.wedged(0.2))  # "waiting" waits, nothing finishes
        release.set()
        await asyncio.sleep(0.05)
        reports.append(queue.wedged(0.2))  # both done: progressing again
        await queue.stop()

    run(scenario())
    assert reports[0] is None and reports[1] is None and reports[3] is None
    assert reports[2] is not None and "1 keys waiting" in reports[2]


def test_one_reconcile_running_too_long_is_wedged_even_with_idle_workers() -> None:
    release = asyncio.Event()
    reports: list[str | None] = []
    reconcile = held_until(release)

    async def scenario() -> None:
        queue = WorkQueue(reconcile, workers=4)
        queue.start()
        queue.add("tenant-a/acme")
        await asyncio.sleep(0.3)
        reports.append(queue.wedged(0.2))
        release.set()
        await asyncio.sleep(0.05)
        reports.append(queue.wedged(0.2))
        await queue.stop()

    run(scenario())
    assert reports[0] is not None and "tenant-a/acme has been running" in reports[0]
    assert reports[1] is None


def test_a_key_arriving_after_a_long_idle_spell_is_not_late() -> None:
    """The wait is counted from when keys began to wait, not from the last finish of an
    idle queue that nobody asked about meanwhile."""
    release = asyncio.Event()
    reports: list[str | None] = []
    reconcile = held_until(release)

    async def scenario() -> None:
        queue = WorkQueue(reconcile, workers=1)
        queue.start()
        await asyncio.sleep(0.3)  # idle, and not asked, for longer than the bound
        queue.add("running")
        await asyncio.sleep(0.01)
        queue.add("waiting")
        reports.append(queue.wedged(0.2))
        release.set()
        await asyncio.sleep(0.05)
        await queue.stop()

    run(scenario())
    assert reports == [None]


def test_a_changed_key_goes_ahead_of_keys_merely_due() -> None:
    """A tenant applied during a resync wave (or an outage's retries) runs next."""
    order: list[str] = []
    gate = asyncio.Event()

    async def reconcile(key: str) -> float | None:
        await gate.wait()
        order.append(key)
        return None

    async def scenario() -> None:
        queue = WorkQueue(reconcile, workers=1)
        queue.start()
        queue.add("busy")  # holds the one worker until the gate opens
        await asyncio.sleep(0.01)
        for n in range(5):
            queue.add(f"due-{n}", changed=False)
        queue.add("new")
        queue.add("due-3")  # an event for one already due: promoted
        queue.add("new", changed=False)  # a timer firing does not demote it
        gate.set()
        await asyncio.sleep(0.1)
        await queue.stop()

    run(scenario())
    assert order == ["busy", "new", "due-3", "due-0", "due-1", "due-2", "due-4"]


def test_a_key_merely_due_is_not_starved_by_a_stream_of_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Changed keys always went first and nothing aged a due one: while changes
    kept coming (children's status churning), retries and timed deadlines (a
    suspend window) never ran."""
    monkeypatch.setattr(workqueue, "DUE_AGING_SECONDS", 0.2, raising=False)
    ran: list[str] = []
    queue: WorkQueue

    async def reconcile(key: str) -> float | None:
        ran.append(key)
        await asyncio.sleep(0.005)
        if key.startswith("busy"):
            queue.add(f"busy-{len(ran) % 2}")  # another change, every run
        return None

    async def scenario() -> None:
        nonlocal queue
        queue = WorkQueue(reconcile, workers=1)
        queue.start()
        queue.add("busy-0")
        queue.add("busy-1")
        await asyncio.sleep(0.01)
        queue.add("due", changed=False)
        await asyncio.sleep(1.0)
        await queue.stop()

    run(scenario())
    assert "due" in ran, Counter(ran)
    assert len(ran) > 50  # the stream of changes went on meanwhile


def test_a_key_due_again_has_its_own_aging_clock_and_none_outlives_the_queue(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The clock of a key's earlier stay in the queue promoted it when it was due
    again, at once, ahead of what changed; and every clock outlived stop()."""
    monkeypatch.setattr(workqueue, "DUE_AGING_SECONDS", 0.3)
    order: list[str] = []
    gate = asyncio.Event()

    async def reconcile(key: str) -> float | None:
        if key == "blocker":
            await gate.wait()
        order.append(key)
        return None

    async def scenario() -> None:
        queue = WorkQueue(reconcile, workers=1)
        queue.start()
        queue.add("x", changed=False)  # its first clock starts
        await asyncio.sleep(0.05)  # x ran
        await asyncio.sleep(0.15)
        queue.add("blocker")
        await asyncio.sleep(0.01)
        queue.add("x", changed=False)  # due again, 0.2 s into the first clock
        await asyncio.sleep(0.15)  # the first clock would have promoted it now
        queue.add("new")
        gate.set()
        await asyncio.sleep(0.05)
        assert order == ["x", "blocker", "new", "x"]
        queue.add("later", changed=False)
        await queue.stop()
        assert queue._aging == {}

    run(scenario())


def test_long_delays_are_spread_and_short_retries_kept() -> None:
    from stackforge_operator.workqueue import spread

    assert spread(5.0) == 5.0
    resyncs = [spread(60.0) for _ in range(200)]
    # Never later than asked: a delay may be a deadline (a suspend window's edge).
    assert all(54.0 <= r <= 60.0 for r in resyncs)
    assert max(resyncs) - min(resyncs) > 3.0  # really spread, not one value
