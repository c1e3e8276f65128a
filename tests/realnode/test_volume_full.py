"""Chaos on the real node (issue #17, case 6): the database volume fills up.

The tenant's PostgreSQL runs on a sized volume of the real node (a tmpfs of
the claim's size, grown online by the node's provisioner). Writing until it is
full makes PostgreSQL 15 PANIC on a WAL write and its crash recovery fail the
same way, so the server stops and crash-loops. The tenant must say so
(PostgresReady False, reason DiskFull), the VolumeFull alert must go out once,
and the kubelet's volume statistics (what the StackForgeDiskFilling alert
reads) must show it above the alert's threshold;
after `spec.postgres.storage` grows, the server starts again by itself with
every committed row, and the alert resolves once.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from stackforge_operator.builders.monitoring import Thresholds
from stackforge_operator.devcluster.node.storage import SIZED_STORAGE_CLASS
from tests.realnode import stack
from tests.realnode.operators import operator_running
from tests.support import operator_identity, tenants
from tests.support.channels import Channels, incidents
from tests.support.clusters import ClusterHandle
from tests.support.objects import name_of, status_of
from tests.support.receiver import Receiver

pytestmark = pytest.mark.chaos

# initdb and the first WAL segments take ~40 MiB: room for the seed and a little more.
FULL_SIZE = "160Mi"
GROWN_SIZE = "320Mi"
# Each fill statement adds ~10 MiB of heap (and as much WAL).
FILL_ROWS = 10_000
FILL_SQL = ("INSERT INTO filler SELECT repeat(md5(g::text), 30) "  # noqa: S608 - constants
            f"FROM generate_series(1, {FILL_ROWS}) g")
INCIDENT = "VolumeFull/Postgres"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def _postgres_condition(cluster: ClusterHandle, name: str) -> dict[str, Any]:
    return tenants.condition(tenants.get(cluster, name), "PostgresReady") or {}


def _claim_capacity(cluster: ClusterHandle, namespace: str) -> str | None:
    claim = client.CoreV1Api(cluster.api).read_namespaced_persistent_volume_claim(
        "data-postgres-0", namespace)
    return (status_of(claim).capacity or {}).get("storage")


def _volume_usage(cluster: ClusterHandle, namespace: str) -> float | None:
    """The database claim's used share as the kubelet reports it (its /metrics, which
    the StackForgeDiskFilling alert reads), or None before it has a sample."""
    core = client.CoreV1Api(cluster.api)
    node = name_of(core.list_node().items[0])
    page = core.connect_get_node_proxy_with_path(node, "metrics")
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if (sample.name.startswith("kubelet_volume_stats_")
                    and sample.labels.get("namespace") == namespace
                    and sample.labels.get("persistentvolumeclaim") == "data-postgres-0"):
                values[sample.name] = sample.value
    used = values.get("kubelet_volume_stats_used_bytes")
    capacity = values.get("kubelet_volume_stats_capacity_bytes")
    return used / capacity if used is not None and capacity else None


def _fill(cluster: ClusterHandle, namespace: str) -> int:
    """Insert until the server fails; the rows of the statements that committed."""
    committed = 0
    for _ in range(40):
        done = cluster.kubectl(
            "exec", "-i", "-n", namespace, "postgres-0", "-c", "postgres", "--",
            "psql", "-U", "postgres", "-h", "/var/run/postgresql", "-d", stack.DATABASE,
            "-v", "ON_ERROR_STOP=1", "-tA", input=FILL_SQL, check=False)
        if done.returncode != 0:
            return committed
        committed += FILL_ROWS
    raise AssertionError(f"{40 * FILL_ROWS} rows fitted on a {FULL_SIZE} volume")


def test_a_full_database_volume_is_reported_and_growing_it_recovers_every_row(
        real_cluster: ClusterHandle,
        real_operator_identity: operator_identity.OperatorIdentity,
        tmp_path_factory: pytest.TempPathFactory,
        receiver: Receiver,
        record_property: Callable[[str, object], None]) -> None:
    cluster = real_cluster
    name = f"vf-{uuid.uuid4().hex[:5]}"
    ns = tenants.namespace_of(name)
    manifest = stack.postgres_only(name)
    manifest["spec"]["components"]["postgres"].update(
        {"storage": FULL_SIZE, "storageClassName": SIZED_STORAGE_CLASS})
    channels = Channels(receiver)
    try:
        with operator_running(real_operator_identity, tmp_path_factory,
                              STACKFORGE_NOTIFY_BACKOFF_SECONDS="0.5"):
            tenants.apply(cluster, manifest)
            stack.wait_ready(cluster, name)
            channels.subscribe(cluster, name, ns, slack=False)
            stack.psql(cluster, ns, stack.SEED_SQL, as_app=True)
            seeded = stack.psql(cluster, ns, stack.ORDERS_CHECKSUM_SQL)
            stack.psql(cluster, ns, "CREATE TABLE filler (x text)")
            assert _claim_capacity(cluster, ns) == FULL_SIZE

            committed = _fill(cluster, ns)
            stopped = time.monotonic()
            full = tenants.eventually(
                lambda: (c := _postgres_condition(cluster, name)).get("reason") == "DiskFull"
                and c, timeout=120, interval=0.5)
            reported = time.monotonic() - stopped
            assert full["status"] == "False"
            assert "No space left on device" in full["message"], full
            tenants.eventually(lambda: channels.webhook(INCIDENT, "opened"), timeout=60)
            alerted = time.monotonic() - stopped
            [opened] = channels.webhook(INCIDENT, "opened")
            assert opened["event"] == "VolumeFull" and "volume is full" in opened["summary"]
            assert INCIDENT in incidents(cluster, name)
            # What the StackForgeDiskFilling alert reads crosses its threshold (no
            # Prometheus runs here: the kubelet's own samples, its expression's ratio).
            threshold = Thresholds().disk_ratio
            usage = tenants.eventually(
                lambda: (u := _volume_usage(cluster, ns)) is not None and u > threshold and u,
                timeout=60, interval=2)

            grow = time.monotonic()
            cluster.kubectl("patch", "sft", name, "-n", ns, "--type=merge", "-p", json.dumps(
                {"spec": {"components": {"postgres": {"storage": GROWN_SIZE}}}}))
            tenants.eventually(lambda: _claim_capacity(cluster, ns) == GROWN_SIZE, timeout=60)
            # The server starts again at its next restart (the kubelet's back-off).
            stack.wait_ready(cluster, name, timeout=360)
            recovered = time.monotonic() - grow

            assert stack.psql(cluster, ns, stack.ORDERS_CHECKSUM_SQL) == seeded
            # Every statement that committed before the disk filled, none of the one that did not.
            assert stack.psql(cluster, ns, "SELECT count(*) FROM filler") == str(committed)
            data_directory = stack.psql(cluster, ns, "SELECT setting FROM pg_settings "
                                                     "WHERE name = 'data_directory'")
            grown = cluster.kubectl("exec", "-n", ns, "postgres-0", "-c", "postgres", "--", "df",
                                    "-B1", "--output=size", data_directory).stdout.split()[-1]
            # The server runs on the grown filesystem (the node's sized class is a
            # tmpfs of exactly the claim's size; a CSI volume may round up).
            assert int(grown) >= 320 * 1024 * 1024
            tenants.eventually(lambda: channels.webhook(INCIDENT, "resolved"), timeout=60)
            time.sleep(5)  # two resyncs: nothing more arrives
            assert len(channels.webhook(INCIDENT, "opened")) == 1
            assert len(channels.webhook(INCIDENT, "resolved")) == 1
        record_property("chaos", f"volume full after {committed} filler rows: DiskFull "
                                 f"{reported:.1f} s and VolumeFull sent {alerted:.1f} s after "
                                 f"the server stopped, the kubelet saw it {usage:.0%} full; "
                                 f"Ready {recovered:.1f} s after growing "
                                 f"{FULL_SIZE} -> {GROWN_SIZE}, every row kept")
    finally:
        tenants.discard(cluster, name)
