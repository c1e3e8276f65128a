from __future__ import annotations

import http.server
import logging
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from stackforge_operator import primary_metrics, replication
from stackforge_operator.builders import exporters
from stackforge_operator.models.tenant import ReplicaStatus

# As the exporter serves its own query's rows, among its other metrics.
_ZERO = 'replica="postgres-replica-0",server="localhost:5432",state="streaming"'
_ONE = 'replica="postgres-replica-1",server="localhost:5432",state="catchup"'
METRICS = f"""\
# HELP pg_up Whether the last scrape could connect to the server.
# TYPE pg_up gauge
pg_up 1
# HELP stackforge_replication_lag_bytes WAL written on the primary, not yet replayed
# TYPE stackforge_replication_lag_bytes gauge
stackforge_replication_lag_bytes{{{_ZERO}}} 0
stackforge_replication_lag_bytes{{{_ONE}}} 7.340032e+07
# HELP stackforge_replication_lag_seconds How long the last replayed WAL took to replay
# TYPE stackforge_replication_lag_seconds gauge
stackforge_replication_lag_seconds{{{_ZERO}}} 0.0012345
stackforge_replication_lag_seconds{{{_ONE}}} 41.5
"""


def test_the_exporter_query_is_yaml_naming_the_metrics_the_operator_reads() -> None:
    queries = yaml.safe_load(exporters.POSTGRES_EXPORTER_QUERIES)
    query = queries[exporters.REPLICATION_LAG_METRIC]
    columns = {name: spec["usage"] for m in query["metrics"] for name, spec in m.items()}
    assert columns == {"replica": "LABEL", "state": "LABEL", "lag_bytes": "GAUGE",
                       "lag_seconds": "GAUGE"}
    for column in columns:
        assert f" AS {column}" in query["query"] or f" {column}," in query["query"]


def test_lag_is_read_per_replica() -> None:
    assert replication.parse_lag(METRICS) == {
        "postgres-replica-0": replication.Lag("streaming", 0, 0.001),
        "postgres-replica-1": replication.Lag("catchup", 73400320, 41.5),
    }
    assert replication.parse_lag("pg_up 0\n") == {}


def pod(name: str, message: str | None = None, finished: str = "2026-11-30T06:00:00Z"
        ) -> dict[str, Any]:
    last: dict[str, Any] = {}
    if message is not None:
        last = {"terminated": {"exitCode": 0, "message": message, "finishedAt": finished}}
    return {"metadata": {"name": name}, "status": {"containerStatuses": [
        {"name": "postgres", "lastState": last, "restartCount": 1 if last else 0}]}}


def test_a_reclone_is_read_from_the_termination_message_and_kept() -> None:
    names = ["postgres-replica-0", "postgres-replica-1"]
    proof = "re-clone: slot postgres_replica_1 keeps WAL from 0/5 only\n"
    pods = [pod("postgres-replica-0"), pod("postgres-replica-1", proof)]
    lag = replication.parse_lag(METRICS)
    first = replication.replica_statuses(names, lag, pods, [])
    assert [(r.name, r.streaming, r.lag_bytes) for r in first] == [
        ("postgres-replica-0", True, 0), ("postgres-replica-1", False, 73400320)]
    assert first[0].last_reclone_time is None
    assert first[1].last_reclone_time == datetime(2026, 11, 30, 6, tzinfo=UTC)
    assert first[1].last_reclone_reason == "slot postgres_replica_1 keeps WAL from 0/5 only"

    # The pod restarts for another reason: the status still says when it was re-cloned.
    later = replication.replica_statuses(
        names, lag, [pod("postgres-replica-0"), pod("postgres-replica-1", "OOMKilled")], first)
    assert later[1].last_reclone_reason == first[1].last_reclone_reason
    assert later[1].last_reclone_time == first[1].last_reclone_time


def test_an_unreadable_exporter_leaves_the_lag_unknown_not_zero() -> None:
    previous = [ReplicaStatus(name="postgres-replica-0", streaming=True, lag_bytes=5)]
    [status] = replication.replica_statuses(["postgres-replica-0"], None, [], previous)
    assert status.streaming is None and status.lag_bytes is None
    # A replica the primary does not list is known not to stream.
    [status] = replication.replica_statuses(["postgres-replica-0"], {}, [], previous)
    assert status.streaming is False and status.lag_bytes is None


def test_an_exporter_that_does_not_answer_is_no_error() -> None:
    assert replication.read_lag(None) is None
    assert replication.read_lag({"status": {}}) is None
    # A closed port on this host: refused at once.
    assert replication.read_lag({"status": {"podIP": "127.0.0.1"}}) is None


def test_an_unreadable_exporter_is_logged_once_until_it_answers_again(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(primary_metrics, "_unreadable", set())
    body = b'stackforge_replication_lag_bytes{replica="r0",state="streaming"} 0\n'

    class Exporter(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    pod = {"status": {"podIP": "127.0.0.1"}}
    with caplog.at_level(logging.INFO, logger=primary_metrics.logger.name):
        for _ in range(3):
            assert replication.read_lag(pod) is None  # nothing listens on the port
        server = http.server.HTTPServer(("127.0.0.1", exporters.POSTGRES_EXPORTER_PORT),
                                           Exporter)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            assert replication.read_lag(pod) is not None
        finally:
            server.shutdown()
            server.server_close()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("metrics are unreadable" in m for m in messages) == 1, messages
    assert sum("readable again" in m for m in messages) == 1, messages
