"""The leadership gate follows kopf's own pause toggles (the ones its watchers wait on)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Coroutine
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits.aiotoggles import ToggleSet
from kopf._core.reactor import orchestration, running

from stackforge_operator import handlers, leadership
from stackforge_operator.leadership import Leadership


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def test_without_kopfs_toggles_the_gate_is_always_open() -> None:
    assert Leadership(None).active
    seen: list[bool] = []

    async def scenario() -> None:
        task = asyncio.create_task(Leadership(None).follow(seen.append))
        await asyncio.sleep(0.05)
        task.cancel()

    run(scenario())
    assert seen == [True]


def test_standalone_is_active_once_kopf_has_set_up_its_toggles() -> None:
    async def scenario() -> None:
        toggles = ToggleSet(any)
        gate = Leadership(toggles)
        assert not gate.active  # kopf's orchestrator has not started: nothing is watched
        missing_crd = await toggles.make_toggle(False, name="peering CRD is missing")
        assert gate.active
        await missing_crd.turn_to(True)
        assert not gate.active

    run(scenario())


def test_with_peering_the_gate_waits_for_kopfs_decision() -> None:
    async def scenario() -> None:
        toggles = ToggleSet(any)
        gate = Leadership(toggles, peering=True)
        await toggles.make_toggle(False, name="peering CRD is missing")
        assert not gate.active  # the peering's own toggle is not there yet
        # kopf pre-activates it (mandatory peering) until it has read the object.
        conflicts = await toggles.make_toggle(True, name="stackforge@None")
        assert not gate.active
        await conflicts.turn_to(False)  # highest priority among the live peers
        assert gate.active
        await conflicts.turn_to(True)  # a higher-priority peer appeared
        assert not gate.active

    run(scenario())


def test_follow_reports_each_change_once() -> None:
    seen: list[bool] = []

    async def scenario() -> None:
        toggles = ToggleSet(any)
        gate = Leadership(toggles, peering=True)
        task = asyncio.create_task(gate.follow(seen.append))
        await asyncio.sleep(0.05)
        await toggles.make_toggle(False, name="peering CRD is missing")
        await asyncio.sleep(0.2)
        assert seen == []  # undecided: no claim either way
        conflicts = await toggles.make_toggle(True, name="stackforge@None")
        await asyncio.sleep(0.2)
        for state in (False, True, True, False):
            await conflicts.turn_to(state)
            await asyncio.sleep(0.05)
        # kopf drops the peering's toggle when the peering CRD goes away.
        await toggles.drop_toggle(conflicts)
        await asyncio.sleep(leadership.RECHECK_SECONDS + 0.3)
        task.cancel()

    run(scenario())
    assert seen == [False, True, False, True, False]


def test_install_records_the_toggles_kopf_hands_its_orchestrator() -> None:
    assert leadership.install()
    wrapped = orchestration.orchestrator
    assert leadership.install() and orchestration.orchestrator is wrapped  # idempotent

    async def scenario() -> None:
        assert leadership.recorded_toggles() is None
        toggles = ToggleSet(any)
        orchestrator: Any = orchestration.orchestrator
        coro = orchestrator(processor=None, settings=None, identity=None, insights=None,
                            operator_paused=toggles)
        coro.close()  # created, as kopf's spawn_tasks does, never run here
        assert leadership.recorded_toggles() is toggles

    run(scenario())


def test_kopf_still_has_the_seam() -> None:
    # The pinned kopf's run hands its pause toggles to the orchestrator by
    # keyword, looked up on the module at run time. A kopf that changes this
    # fails here (and a peering replica refuses to start, handlers.start).
    assert handlers.PAUSE_SEAM
    assert "operator_paused=operator_paused" in inspect.getsource(running.spawn_tasks)
    assert "orchestration.orchestrator(" in inspect.getsource(running.spawn_tasks)


def test_a_peering_replica_without_kopfs_toggles_refuses_to_start() -> None:
    # Ungated controllers on a paused replica would reconcile beside the active one.
    settings = kopf.OperatorSettings()
    settings.peering.standalone = False

    async def scenario() -> None:
        assert leadership.recorded_toggles() is None  # a loop kopf did not start
        with pytest.raises(kopf.PermanentError, match="peering needs kopf's pause state"):
            start: Any = handlers.start  # kopf's decorator types it as an ActivityFn
            await start(settings=settings, memo=kopf.Memo())

    run(scenario())
