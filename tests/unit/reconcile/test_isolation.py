from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from stackforge_operator import config
from stackforge_operator.models.common import Condition, ConditionStatus
from stackforge_operator.models.effective import Isolation
from stackforge_operator.reconcile import isolation

NOW = datetime(2026, 11, 30, 12, 0, 0, 700000, tzinfo=UTC)


def _pod(name: str, component: str, created: datetime, **meta: Any) -> dict[str, Any]:
    """A pod of a workload (a StatefulSet's, a ReplicaSet's), unless ``meta`` says."""
    return {"metadata": {"name": name, "labels": {"app.kubernetes.io/component": component},
                         "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "ownerReferences": [{"kind": "StatefulSet", "name": component,
                                              "controller": True}], **meta}}


def _isolated(status: ConditionStatus, since: datetime) -> Condition:
    return Condition(type="Isolated", status=status, reason="X", last_transition_time=since)


def test_isolation_starts_now_until_the_condition_says_true() -> None:
    earlier = NOW - timedelta(hours=1)
    assert isolation.isolated_since([], NOW) == NOW
    assert isolation.isolated_since([_isolated(ConditionStatus.FALSE, earlier)], NOW) == NOW
    assert isolation.isolated_since([_isolated(ConditionStatus.TRUE, earlier)], NOW) == earlier


def test_only_unrollable_pods_older_than_the_isolation_are_replaced() -> None:
    old = NOW - timedelta(minutes=5)
    pods = [
        _pod("kafka-0", "kafka", old), _pod("kafka-1", "kafka", old),
        _pod("consul-0", "consul", old),
        # A read replica's readers: no sidecar closes their sessions.
        _pod("postgres-replica-0", "postgres-replica", old),
        # The apps, Kong and the pooler: an intruder's outbound session, a
        # client's WebSocket kept going through an isolation.
        _pod("api-7d9f-abcde", "app", old), _pod("kong-5c6b-fghij", "kong", old),
        _pod("pooler-4a3b-klmno", "pooler", old),
        # Others close their own sessions (the primary) or roll (Redis).
        _pod("redis-0", "redis", old), _pod("postgres-0", "postgres", old),
        # Made within the second the isolation started: perhaps before it, so
        # perhaps holding a session (spared before, for the whole isolation).
        _pod("kafka-2", "kafka", NOW + timedelta(microseconds=999_999 - NOW.microsecond)),
        # Already on its way out.
        _pod("kafka-3", "kafka", old, deletionTimestamp="2026-11-30T12:00:00Z"),
        # A bare pod with an app's labels: nothing would make it again.
        _pod("debug-shell", "app", old, ownerReferences=[]),
    ]
    assert isolation.pods_to_replace(pods, NOW) == [
        "api-7d9f-abcde", "consul-0", "kafka-0", "kafka-1", "kafka-2", "kong-5c6b-fghij",
        "pooler-4a3b-klmno", "postgres-replica-0"]
    # Once replaced, nothing more: the next reconcile finds only new pods, made
    # from the next whole second on.
    next_second = NOW.replace(microsecond=0) + timedelta(seconds=1)
    later = [_pod(n, "kafka", next_second) for n in ("kafka-0", "kafka-1")]
    assert isolation.pods_to_replace(later, NOW) == []


def test_the_primary_closes_sessions_begun_before_the_isolation_settled() -> None:
    # NOW is 12:00:00.7: whole seconds (as the condition is read back), then
    # the settle time on top.
    began = NOW.replace(microsecond=0)
    assert config.ISOLATION_SETTLE_SECONDS == 10
    assert isolation.timed([], NOW) == Isolation(began, began + timedelta(seconds=10))
    assert isolation.sessions_before(NOW) == datetime(2026, 11, 30, 12, 0, 11, tzinfo=UTC)
    earlier = NOW - timedelta(hours=1)
    assert isolation.timed([_isolated(ConditionStatus.TRUE, earlier)], NOW) == Isolation(
        earlier.replace(microsecond=0), datetime(2026, 11, 30, 11, 0, 10, tzinfo=UTC))


def test_a_lift_is_reported_once_no_later_session_can_be_taken_for_the_isolations() -> None:
    began = NOW - timedelta(seconds=4)
    settled = isolation.sessions_before(began)
    true = [_isolated(ConditionStatus.TRUE, began)]
    # Lifted 4 s into the isolation: reported when its moment has passed.
    assert isolation.lifting_until(False, true, NOW) == settled
    assert isolation.lifting_until(False, true, settled - timedelta(microseconds=1)) == settled
    assert isolation.lifting_until(False, true, settled) is None
    # Still isolated, never isolated, or already reported lifted: nothing to wait for.
    assert isolation.lifting_until(True, true, NOW) is None
    assert isolation.lifting_until(False, [], NOW) is None
    assert isolation.lifting_until(False, [_isolated(ConditionStatus.FALSE, began)], NOW) is None


def test_app_kong_and_pooler_pods_wait_for_the_evidence_bundle_within_a_bound() -> None:
    """Deleted in the pass whose capture failed, their logs were gone before the
    retry; kept until the bundle is written, or for a bounded time."""
    old = NOW - timedelta(minutes=5)
    pods = [_pod("api-7d9f-abcde", "app", old), _pod("kafka-0", "kafka", old)]
    began = NOW - timedelta(seconds=30)
    waiting = isolation.spared(False, began, NOW)
    assert isolation.pods_to_replace(pods, NOW, waiting) == ["kafka-0"]
    assert isolation.spared(True, began, NOW) == ()
    late = began + timedelta(seconds=config.ISOLATION_EVIDENCE_WAIT_SECONDS)
    assert isolation.spared(False, began, late) == ()
    assert isolation.pods_to_replace(pods, NOW, isolation.spared(False, began, late)) == [
        "api-7d9f-abcde", "kafka-0"]
