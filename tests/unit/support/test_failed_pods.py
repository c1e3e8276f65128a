"""Which containers a failed test's report tells about (tests/support/failed_pods.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.support.failed_pods import failed_since

SINCE = datetime(2026, 12, 5, 6, 0, tzinfo=UTC)


def _pod(name: str, **statuses: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "t-acme"}, "status": statuses}


def _ended(code: int, at: str, message: str = "") -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "finishedAt": at, "message": message}}


def test_only_non_zero_exits_after_the_start_are_told_current_and_restarted_alike() -> None:
    pods = [
        _pod("backup-1", containerStatuses=[
            {"name": "runner", "state": _ended(1, "2026-12-05T06:00:07Z", '{"reason":"X"}')}]),
        _pod("done", containerStatuses=[
            {"name": "runner", "state": _ended(0, "2026-12-05T06:00:09Z")}]),
        _pod("earlier", containerStatuses=[
            {"name": "runner", "state": _ended(2, "2026-12-05T05:59:59Z")}]),
        _pod("postgres-0", initContainerStatuses=[
            {"name": "init", "state": _ended(0, "2026-12-05T06:00:01Z")}],
            containerStatuses=[
            {"name": "postgres", "state": {"running": {"startedAt": "2026-12-05T06:00:05Z"}},
             "lastState": _ended(137, "2026-12-05T06:00:04+00:00")},
            {"name": "upkeep", "state": {"waiting": {"reason": "ContainerCreating"}}}]),
    ]
    found = failed_since(pods, SINCE)
    assert [(f.pod, f.container, f.exit_code, f.previous) for f in found] == [
        ("postgres-0", "postgres", 137, True), ("backup-1", "runner", 1, False)]
    assert found[1].message == '{"reason":"X"}'
    assert found[0].heading() == ("t-acme/postgres-0 container postgres exited 137 at "
                                  "2026-12-05T06:00:04+00:00 (previous run)")


def test_pods_without_statuses_are_skipped() -> None:
    assert failed_since([{"metadata": {"name": "new"}}, _pod("pending")], SINCE) == []
