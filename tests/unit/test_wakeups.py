"""Which reconcile a change to one of the operator's objects wakes."""

from __future__ import annotations

from stackforge_operator.builders.backup import POLICY_LABEL
from stackforge_operator.builders.common import MANAGED_BY, MANAGED_BY_LABEL, TENANT_LABEL
from stackforge_operator.builders.drill import DRILL_LABEL, DRILL_NAMESPACE_LABEL
from stackforge_operator.wakeups import owners

OURS = {MANAGED_BY_LABEL: MANAGED_BY}


def meta(namespace: str | None, name: str, **labels: str) -> dict[str, object]:
    found: dict[str, object] = {"name": name, "labels": {**OURS, **labels}}
    if namespace is not None:
        found["namespace"] = namespace
    return found


def test_a_child_wakes_its_tenant_and_a_namespace_the_tenant_it_holds() -> None:
    child = meta("tenant-shop", "kong", **{TENANT_LABEL: "shop"})
    assert owners("Deployment", child) == [("tenant", "tenant-shop/shop")]
    assert owners("Secret", child) == [("tenant", "tenant-shop/shop")]
    namespace = meta(None, "tenant-shop", **{TENANT_LABEL: "shop"})
    assert owners("Namespace", namespace) == [("tenant", "tenant-shop/shop")]


def test_pods_and_objects_not_the_operators_wake_nothing() -> None:
    assert owners("Pod", meta("tenant-shop", "postgres-0", **{TENANT_LABEL: "shop"})) == []
    foreign = {"name": "kong", "namespace": "tenant-shop", "labels": {TENANT_LABEL: "shop"}}
    assert owners("Deployment", foreign) == []
    assert owners("Secret", {"name": "tls", "namespace": "tenant-shop"}) == []


def test_a_backup_job_wakes_its_policy_and_a_sandbox_its_drill() -> None:
    job = meta("tenant-shop", "nightly-123", **{POLICY_LABEL: "nightly"})
    assert owners("Job", job) == [("backup", "tenant-shop/nightly")]
    sandbox = {DRILL_LABEL: "monthly", DRILL_NAMESPACE_LABEL: "tenant-shop"}
    assert owners("StatefulSet", meta("sandbox-shop-1", "postgres", **sandbox)) == [
        ("drill", "tenant-shop/monthly")]
    assert owners("Job", meta("sandbox-shop-1", "restore", **sandbox)) == [
        ("drill", "tenant-shop/monthly")]
    # A policy's label on another kind (its CronJob, configuration) wakes no policy.
    assert owners("CronJob", meta("tenant-shop", "nightly", **{POLICY_LABEL: "nightly"})) == []


def test_a_change_seen_after_the_operator_stopped_wakes_nothing_and_raises_nothing() -> None:
    import asyncio
    from typing import Any, cast

    from stackforge_operator import handlers

    class Woken:
        def __init__(self) -> None:
            self.calls: list[object] = []

        def poke(self, key: str) -> None:
            self.calls.append(key)

        def wake_namespace(self, namespace: str | None) -> None:
            self.calls.append(namespace)

    class ClosingLoop:
        """A loop that closes while an informer's thread is about to hand it a call:
        open when asked, closed when called."""

        def is_closed(self) -> bool:
            return False

        def call_soon_threadsafe(self, *_: object) -> None:
            raise RuntimeError("Event loop is closed")

    tenants = Woken()
    child = meta("tenant-shop", "kong", **{TENANT_LABEL: "shop"})
    assert owners("Deployment", child)  # it would wake its tenant
    closed = asyncio.new_event_loop()
    closed.close()
    # Called in an informer's thread as the operator stops: nothing runs, nothing raises.
    for loop in (closed, ClosingLoop()):
        handlers._wake_owners(cast(Any, loop), cast(Any, {"tenant": tenants}), "Deployment",
                              "MODIFIED", {"metadata": child})
        handlers._wake_namespace(cast(Any, loop), cast(Any, tenants), "tenant-shop")
    assert tenants.calls == []


def test_a_tenants_isolation_turned_on_or_off_wakes_the_policies_in_its_namespace() -> None:
    """The policies' egress objects (the runners', the primary's to the archive)
    follow the tenant's isolation: without a wake they waited for their resync,
    and a stalled policy's never came."""
    import kopf

    from stackforge_operator import handlers

    class Policies:
        def __init__(self) -> None:
            self.poked: list[str] = []

        def poke_namespace(self, namespace: str) -> None:
            self.poked.append(namespace)

    policies = Policies()
    memo = kopf.Memo(backups=policies)

    def tenant(isolate: bool | None) -> kopf.Body:
        spec = {} if isolate is None else {"isolate": isolate}
        return kopf.Body({"metadata": {"name": "shop", "namespace": "tenant-shop"},
                          "spec": spec})

    handlers._wake_policies_on_isolation(memo, "ADDED", tenant(None))  # first sight
    handlers._wake_policies_on_isolation(memo, "MODIFIED", tenant(False))  # same: not isolated
    assert policies.poked == []
    handlers._wake_policies_on_isolation(memo, "MODIFIED", tenant(True))
    handlers._wake_policies_on_isolation(memo, "MODIFIED", tenant(True))  # a status write
    assert policies.poked == ["tenant-shop"]
    handlers._wake_policies_on_isolation(memo, "MODIFIED", tenant(False))
    assert policies.poked == ["tenant-shop", "tenant-shop"]
    handlers._wake_policies_on_isolation(memo, "DELETED", tenant(False))
    handlers._wake_policies_on_isolation(memo, "ADDED", tenant(True))  # made again: first sight
    assert policies.poked == ["tenant-shop", "tenant-shop"]
