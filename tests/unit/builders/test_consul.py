from __future__ import annotations

import json
from typing import Any

from stackforge_operator.builders import consul, exporters, network
from stackforge_operator.builders import secrets_names as sn
from stackforge_operator.builders.common import CONFIG_HASH_ANNOTATION, CONSUL_HTTP_PORT
from tests.unit.builders.tenants import BASE, container, env_of, find, secret_ref, tenant

ON: dict[str, Any] = {"components": {"consul": {"enabled": True, "replicas": 3}}}


def registered(t_changes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cm = find(consul.build(tenant(t_changes)), "ConfigMap", "consul-services")
    services = json.loads(cm["data"][consul.SERVICES_FILE])["services"]
    return {s["name"]: s for s in services}


def test_disabled_consul_builds_nothing() -> None:
    assert consul.build(tenant({"components": {"consul": {"enabled": False}}})) == []


def test_servers_expect_the_replica_count() -> None:
    sts = find(consul.build(tenant(ON)), "StatefulSet", "consul")
    assert sts["spec"]["replicas"] == 3
    args = container(sts, "consul")["args"]
    assert "-server" in args and "-bootstrap-expect=3" in args
    joins = [a for a in args if a.startswith("-retry-join=")]
    assert joins == [f"-retry-join=consul-{i}.consul-headless.tenant-acme.svc" for i in range(3)]


def test_gossip_key_from_the_secret() -> None:
    c = container(find(consul.build(tenant(ON)), "StatefulSet", "consul"), "consul")
    assert "-encrypt=$(CONSUL_GOSSIP_KEY)" in c["args"]
    assert secret_ref(env_of(c)["CONSUL_GOSSIP_KEY"]) == (sn.CONSUL_SECRET, sn.CONSUL_GOSSIP_KEY)


def test_services() -> None:
    objs = consul.build(tenant(ON))
    http = find(objs, "Service", "consul")["spec"]
    assert [p["port"] for p in http["ports"]] == [CONSUL_HTTP_PORT]
    headless = find(objs, "Service", "consul-headless")["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert {p["protocol"] for p in headless["ports"]} == {"TCP", "UDP"}


def test_every_app_is_registered_with_its_service_address_and_a_check() -> None:
    services = registered(ON)
    assert set(services) == {a["name"] for a in BASE["components"]["apps"]}
    api, worker = services["api"], services["worker"]
    assert api["address"] == "api.tenant-acme.svc" and api["port"] == 8080
    assert api["checks"][0]["http"] == "http://api.tenant-acme.svc:8080/healthz"
    # No health-check path: a TCP check.
    assert worker["checks"][0]["tcp"] == "worker.tenant-acme.svc:9000"
    assert "http" not in worker["checks"][0]


def test_a_new_app_is_registered_and_rolls_the_servers() -> None:
    extra = {"name": "billing", "image": "registry.example.com/acme/billing:1.0", "port": 7000}
    more = {"components": {**ON["components"], "apps": [*BASE["components"]["apps"], extra]}}
    assert "billing" in registered(more)

    def digest(changes: dict[str, Any]) -> str:
        sts = find(consul.build(tenant(changes)), "StatefulSet", "consul")
        return str(sts["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])

    assert digest(more) != digest(ON)


def test_app_order_and_app_scaling_do_not_change_the_registration() -> None:
    apps = BASE["components"]["apps"]
    reordered = {"components": {**ON["components"], "apps": list(reversed(apps))}}
    scaled = {
        "components": {
            **ON["components"],
            "apps": [{**a, "replicas": 5} if a["name"] == "web" else a for a in apps],
        }
    }
    base = find(consul.build(tenant(ON)), "StatefulSet", "consul")
    for changes in (reordered, scaled):
        assert find(consul.build(tenant(changes)), "StatefulSet", "consul") == base


def test_readiness_needs_a_known_leader_not_just_the_http_api() -> None:
    sts = find(consul.build(tenant()), "StatefulSet", "consul")
    probe = container(sts, "consul")["readinessProbe"]
    # /v1/status/leader answers 200 with no leader; a consistent raft read does not.
    assert probe["exec"]["command"] == ["consul", "operator", "raft", "list-peers"]
    assert "httpGet" not in probe
    # Unready servers must still find each other to elect a leader.
    headless = find(consul.build(tenant()), "Service", "consul-headless")
    assert headless["spec"]["publishNotReadyAddresses"] is True


def test_scrapers_reach_an_exporter_beside_consul_never_its_http_api() -> None:
    """Consul runs without ACLs: whoever reaches its HTTP API (8500) reads and
    writes every key of the tenant's KV store. Scrapers were allowed there, for
    /v1/agent/metrics; they now reach the exporter's port only."""
    t = tenant(ON)
    sts = find(consul.build(t), "StatefulSet", "consul")
    exporter = container(sts, "consul-exporter")
    assert exporter["image"] == "prom/consul-exporter:v0.13.0"
    assert exporter["command"] == ["/bin/consul_exporter"]
    assert f"--consul.server=http://localhost:{CONSUL_HTTP_PORT}" in exporter["args"]
    assert not any(a.startswith("--kv.") for a in exporter["args"])  # no KV in metrics
    [port] = exporter["ports"]
    assert (port["name"], port["containerPort"]) == ("metrics", exporters.CONSUL_EXPORTER_PORT)
    [target] = [s for s in exporters.scrape_targets(t) if s.component == "consul"]
    assert (target.port, target.path) == (exporters.CONSUL_EXPORTER_PORT, "/metrics")
    into_consul = [f for f in network.flows(t) if f.destination.name == "consul"]
    scraping = [f for f in into_consul if f.source.name == "metrics-scrapers"]
    assert [f.ports for f in scraping] == [(("TCP", exporters.CONSUL_EXPORTER_PORT),)]
    http_api = {f.source.name for f in into_consul
                if not f.ports or ("TCP", CONSUL_HTTP_PORT) in f.ports}
    assert "metrics-scrapers" not in http_api and http_api >= {"kong"}, http_api
