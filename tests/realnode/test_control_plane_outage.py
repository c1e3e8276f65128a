"""Chaos on the real node's control plane (issue #17, cases 1 and 2, with data): the
API server killed for 10 s, then etcd, under a running tenant whose application
writes all along.

The data plane needs no control plane: the tenant's PostgreSQL keeps its client's
connection and commits its writes while the API server or etcd is down, no
container of the tenant restarts, and nothing written is lost. After each return
the operator's watch is back: the app scaled right then is carried out (its
Deployment has one more ready pod), and in the end every child exists once, owned
by the tenant. (The load of these cases, 30 tenants being provisioned, runs on
kwok nodes in tests/chaos/test_control_plane.py; this is the part that needs
running pods.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from tests.realnode import journal, pods, stack
from tests.realnode.operators import operator_running
from tests.support import children, operator_identity, tenants
from tests.support.clusters import ClusterHandle

pytestmark = pytest.mark.chaos

DOWN_SECONDS = 10
# The operator's watch is back within 30 s of the API's return (as on kwok): by
# then the app's Deployment asks for the new count. Its new pod then has the
# cluster's controllers, scheduler and kubelet to go through.
WATCH_RESUME_LIMIT_SECONDS = 30
SCALED_WITHIN_SECONDS = 90
def test_a_running_tenant_keeps_writing_and_loses_nothing_while_the_api_server_or_etcd_is_down(
        real_cluster: ClusterHandle,
        real_operator_identity: operator_identity.OperatorIdentity,
        tmp_path_factory: pytest.TempPathFactory,
        record_property: Callable[[str, object], None]) -> None:
    local = real_cluster.local
    assert local is not None and local.node is not None
    name = f"cp-{uuid.uuid4().hex[:5]}"
    ns = tenants.namespace_of(name)
    replicas = 1
    figures = []
    try:
        with operator_running(real_operator_identity, tmp_path_factory):
            tenants.apply(real_cluster, stack.postgres_and_app(name, replicas))
            stack.wait_ready(real_cluster, name)
            stack.psql(real_cluster, ns, stack.SEED_SQL + journal.JOURNAL_SQL + ";", as_app=True)
            seeded = stack.psql(real_cluster, ns, stack.ORDERS_CHECKSUM_SQL)
            pods.apply(real_cluster, *journal.writer(ns, name))
            pods.wait_ready(real_cluster, ns, journal.WRITER)
            tenants.eventually(lambda: len(journal.acknowledged(real_cluster, ns)) >= 3, timeout=30)
            before = pods.containers_of(real_cluster, ns)
            assert {"postgres-0", journal.WRITER} < set(before), before

            for component in ("kube-apiserver", "etcd"):
                killed_at = datetime.now(UTC)
                local.component(component).kill()
                time.sleep(DOWN_SECONDS)
                returned_at = datetime.now(UTC)
                local.restart_component(component)
                back = time.monotonic()
                # etcd's return is not yet the API server's: it reconnects first.
                tenants.eventually(lambda: real_cluster.kubectl(
                    "get", "--raw", "/readyz", check=False).returncode == 0, timeout=60)
                # Written while it was down: committed by the server, acknowledged
                # to the client, with no API server to ask anything of.
                # Both ends from this host's clock, which the node's pods share.
                during_sql = ("SELECT count(*) FROM shop.journal WHERE at BETWEEN "  # noqa: S608
                              f"'{killed_at.isoformat()}' AND '{returned_at.isoformat()}'")
                during = int(stack.psql(real_cluster, ns, during_sql))
                assert during >= DOWN_SECONDS, f"{during} rows written while {component} was down"

                replicas += 1
                tenants.apply(real_cluster, stack.postgres_and_app(name, replicas))

                def asked_for(wanted: int = replicas) -> bool:
                    return stack.app_pods(real_cluster, ns)[0] == wanted

                def scaled_to(wanted: int = replicas) -> bool:
                    return stack.app_pods(real_cluster, ns)[1] == wanted

                try:
                    tenants.eventually(asked_for, timeout=WATCH_RESUME_LIMIT_SECONDS,
                                       interval=0.25)
                    asked = time.monotonic() - back
                    tenants.eventually(scaled_to, timeout=SCALED_WITHIN_SECONDS, interval=0.5)
                except AssertionError:
                    raise AssertionError(
                        f"the app was not scaled to {replicas} in time after {component}'s "
                        f"return: (asked, ready) {stack.app_pods(real_cluster, ns)}"
                        f"{stack.diagnosis(real_cluster, ns)}") from None
                scaled = time.monotonic() - back
                stack.wait_ready(real_cluster, name, timeout=120)
                figures.append(f"{component} down {DOWN_SECONDS} s: {during} rows committed "
                               f"meanwhile; after its return, the app's Deployment asked for "
                               f"{replicas} pods at {asked:.1f} s, all ready at {scaled:.1f} s")

            # The same processes all along (the new app pods aside), every write the
            # client was told of is stored, and the seeded rows are unchanged.
            after = pods.containers_of(real_cluster, ns)
            assert {pod: after.get(pod) for pod in before} == before
            acknowledged = journal.acknowledged(real_cluster, ns)
            stored = {int(row) for row in stack.psql(
                real_cluster, ns, "SELECT id FROM shop.journal").split()}
            assert acknowledged and acknowledged <= stored, sorted(acknowledged - stored)
            assert stack.psql(real_cluster, ns, stack.ORDERS_CHECKSUM_SQL) == seeded
            assert children.problems(real_cluster, stack.postgres_and_app(name, replicas)) == []
        record_property("chaos", "; ".join(figures) + f"; {len(acknowledged)} writes "
                                 "acknowledged, all stored; no container restarted")
    finally:
        tenants.discard(real_cluster, name)
