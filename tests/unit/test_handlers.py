"""The operator's periodic sweep of orphaned drill sandboxes (handlers._reap_orphans)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stackforge_operator import config, handlers
from stackforge_operator.reconcile import drill_orphans


class _Active:
    active = True


def test_the_orphan_sweep_outlives_an_unexpected_failure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """It caught only API errors: anything else (a KeyError of the dynamic client's
    discovery race) ended the task, unseen until shutdown, and sandboxes of drills
    deleted meanwhile (restored customer data, copies of the bucket's keys)
    stayed until the operator restarted."""
    sweeps = 0

    def reap(*_: Any) -> None:
        nonlocal sweeps
        sweeps += 1
        if sweeps == 1:
            raise KeyError("stackforge.io/v1")

    monkeypatch.setattr(drill_orphans, "reap", reap)
    monkeypatch.setattr(config, "DRILL_ORPHAN_SWEEP_SECONDS", 0.05)

    async def run() -> None:
        sweeping = asyncio.ensure_future(handlers._reap_orphans(_Active()))  # type: ignore[arg-type]
        await asyncio.sleep(0.5)
        assert not sweeping.done(), sweeping
        sweeping.cancel()

    asyncio.run(run())
    assert sweeps >= 3
