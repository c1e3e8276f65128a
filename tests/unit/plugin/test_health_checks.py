"""The health command's verdicts from what the live stack answers (the answers
themselves, from running pods: tests/realnode/test_plugin.py and test_kafka.py)."""

from __future__ import annotations

import json

from stackforge_operator.builders.monitoring import THRESHOLDS
from stackforge_operator.plugin import health_checks as hc

EXPORTER = """\
# HELP kafka_brokers Number of brokers in the cluster.
# TYPE kafka_brokers gauge
kafka_brokers 3
kafka_exporter_scrape_success 1
kafka_topic_partitions{topic="orders"} 3
kafka_topic_partitions{topic="invoices"} 1
kafka_topic_partitions{topic="__consumer_offsets"} 50
kafka_consumergroup_lag{consumergroup="billing",partition="0",topic="invoices"} 6
kafka_consumergroup_lag{consumergroup="audit",partition="0",topic="orders"} 0
kafka_consumergroup_lag{consumergroup="audit",partition="1",topic="orders"} 2
"""


def test_zero_wanted_pods_are_skipped_and_fewer_ready_than_wanted_fail() -> None:
    assert hc.pods_check("redis", 0, [], []).result == hc.SKIP
    assert hc.pods_check("redis", 1, ["redis-0"], []).result == hc.PASS
    short = hc.pods_check("kafka", 3, ["kafka-0", "kafka-2"], ["kafka-1"])
    assert (short.result, short.detail) == (hc.FAIL, "2/3 ready; not ready: kafka-1")
    # A rollout whose new pod does not start: the old one still serves.
    stuck = hc.pods_check("api", 1, ["api-old"], ["api-new"])
    assert (stuck.result, stuck.detail) == (hc.FAIL, "1/1 ready; not ready: api-new")


def _pod(name: str, ready: bool, phase: str = "Running", deleting: bool = False
         ) -> dict[str, object]:
    meta: dict[str, object] = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-06T09:00:00Z"
    return {"metadata": meta, "status": {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}}


def test_pods_on_their_way_out_are_not_judged_their_replacements_are() -> None:
    pods = [_pod("api-a", True), _pod("api-b", False),
            _pod("api-evicted", False, phase="Failed"), _pod("job-done", False, "Succeeded"),
            _pod("api-old", True, deleting=True)]
    assert hc.ready_and_not(pods) == (["api-a"], ["api-b"])
    # A tenant whose one app pod was evicted and replaced stays healthy.
    ready, not_ready = hc.ready_and_not([_pod("api-evicted", False, "Failed"),
                                         _pod("api-new", True)])
    assert hc.pods_check("api", 1, ready, not_ready).result == hc.PASS


def test_a_command_passes_on_exit_0_and_fails_with_its_error_otherwise() -> None:
    ok = hc.command_check("postgres", "ready", "postgres-0", 0,
                          "/var/run/postgresql:5432 - accepting connections\n", "")
    assert (ok.result, ok.detail) == (hc.PASS, "/var/run/postgresql:5432 - accepting connections")
    down = hc.command_check("postgres", "ready", "postgres-0", 2,
                            "/var/run/postgresql:5432 - no response\n", "")
    assert down.result == hc.FAIL and "exit 2" in down.detail and "no response" in down.detail


def test_redis_passes_on_pong_only() -> None:
    assert hc.redis_ping("redis-0", 0, "PONG\n", "").result == hc.PASS
    refused = hc.redis_ping("redis-0", 0, "NOAUTH Authentication required.\n", "")
    assert refused.result == hc.FAIL and "NOAUTH" in refused.detail
    hung = hc.redis_ping("redis-0", 124, "", "no answer within 15 s\n")
    assert hung.result == hc.FAIL and "no answer within 15 s" in hung.detail


def test_connections_fail_above_the_alerts_share_of_max_connections() -> None:
    limit = 100
    at_threshold = int(THRESHOLDS.db_connections_ratio * limit)
    under = hc.connections("postgres-0", 0, f"{at_threshold}|{limit}\n", "")
    assert under.result == hc.PASS and under.detail.startswith(f"{at_threshold}/{limit} ")
    assert hc.connections("postgres-0", 0, f"{at_threshold + 1}|{limit}\n", "").result == hc.FAIL
    assert hc.connections("postgres-0", 0, "garbage", "").result == hc.FAIL
    assert hc.connections("postgres-0", 2, "", "psql: error: connection failed\n").result == hc.FAIL


def test_kafka_reads_brokers_topics_and_each_groups_summed_lag() -> None:
    checks = hc.kafka("kafka-0", EXPORTER, 3)
    assert [(c.check, c.result, c.detail) for c in checks] == [
        ("brokers", hc.PASS, "3/3 brokers in the cluster"),
        ("topics", hc.PASS, "2: invoices, orders"),
        ("consumer lag", hc.PASS, "group audit: 2 messages behind"),
        ("consumer lag", hc.PASS, "group billing: 6 messages behind"),
    ]


def test_kafka_fails_on_missing_brokers_and_on_a_failed_scrape() -> None:
    assert hc.kafka("kafka-0", EXPORTER.replace("kafka_brokers 3", "kafka_brokers 2"),
                    3)[0].result == hc.FAIL
    failed = hc.kafka("kafka-0", "kafka_exporter_scrape_success 0\n", 3)
    assert [c.result for c in failed] == [hc.FAIL]


def test_consul_needs_a_leader_and_every_peer() -> None:
    members = ["10.0.0.1:8300", "10.0.0.2:8300", "10.0.0.3:8300"]
    peers = json.dumps(members)
    good = hc.consul("consul-0", (200, '"10.0.0.1:8300"'), (200, peers), 3)
    assert [c.result for c in good] == [hc.PASS, hc.PASS]
    assert good[1].detail == "3/3 raft peers"
    leaderless = hc.consul("consul-0", (200, '""'), (200, peers), 3)
    assert leaderless[0].result == hc.FAIL
    short = hc.consul("consul-0", (200, '"10.0.0.1:8300"'), (200, json.dumps(members[:1])), 3)
    assert (short[1].result, short[1].detail) == (hc.FAIL, "1/3 raft peers")
    broken = hc.consul("consul-0", (500, "No cluster leader"), (500, "No cluster leader"), 3)
    assert [c.result for c in broken] == [hc.FAIL, hc.FAIL]


def test_http_answers_pass_below_400() -> None:
    assert hc.http_check("app/api", "GET /healthz", "api-1", 200, "ok\n").result == hc.PASS
    assert hc.http_check("app/api", "GET /healthz", "api-1", 302, "").result == hc.PASS
    failing = hc.http_check("app/api", "GET /healthz", "api-1", 503, "draining\n")
    assert (failing.result, failing.detail) == (hc.FAIL, "HTTP 503: draining")


def test_the_exit_code_is_1_on_any_failure_and_skipped_rows_do_not_count() -> None:
    ok = hc.passed("redis", "ping", "redis-0", "PONG")
    skipped = hc.pods_check("kong", 0, [], [])
    assert hc.exit_code([ok, skipped]) == 0
    assert hc.exit_code([ok, hc.failed("redis", "ping", "redis-1", "exit 1")]) == 1


def test_the_table_colours_results_on_a_terminal_only() -> None:
    tenant = {"metadata": {"name": "acme", "namespace": "tenant-acme"}}
    checks = [hc.passed("redis", "ping", "redis-0", "PONG"),
              hc.failed("postgres", "ready", "postgres-0", "exit 2: no response")]
    plain = hc.table(tenant, checks)
    assert "\033[" not in plain
    assert plain.splitlines()[0].split() == ["COMPONENT", "CHECK", "TARGET", "RESULT", "DETAIL"]
    assert plain.splitlines()[-1] == "tenant tenant-acme/acme: 2 checks, 1 failed"
    coloured = hc.table(tenant, checks, color=True)
    assert "\033[31mFAIL" in coloured and "\033[32mok" in coloured
