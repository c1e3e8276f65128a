from __future__ import annotations

from typing import Any

import yaml

from stackforge_operator.builders import kong
from stackforge_operator.builders.common import CONFIG_HASH_ANNOTATION, KONG_PROXY_PORT
from tests.unit.builders.tenants import BASE, container, env_of, find, tenant

APPS: list[dict[str, Any]] = BASE["components"]["apps"]


def with_kong(replicas: int, **changes: Any) -> dict[str, Any]:
    return {"components": {"kong": {"replicas": replicas}}, **changes}


def declarative(changes: dict[str, Any] | None = None) -> dict[str, Any]:
    cm = find(kong.build(tenant(changes)), "ConfigMap", "kong-config")
    loaded: dict[str, Any] = yaml.safe_load(cm["data"][kong.CONFIG_FILE])
    return loaded


def test_routes_every_app_to_its_service() -> None:
    config = declarative()
    assert config["_format_version"] == "3.0"
    services = {s["name"]: s for s in config["services"]}
    assert set(services) == {a["name"] for a in APPS}
    for app in APPS:
        svc = services[app["name"]]
        assert svc["url"] == f"http://{app['name']}.tenant-acme.svc:{app['port']}"
        [route] = svc["routes"]
        assert route["paths"] == [app.get("path", "/" + app["name"])]
        assert route["strip_path"] is False


def test_no_apps_no_services() -> None:
    assert declarative({"components": {"apps": []}})["services"] == []


def test_deployment_reads_the_config_db_less() -> None:
    dep = find(kong.build(tenant(with_kong(3))), "Deployment", "kong")
    assert dep["spec"]["replicas"] == 3
    c = container(dep)
    env = env_of(c)
    assert env["KONG_DATABASE"]["value"] == "off"
    config_path = env["KONG_DECLARATIVE_CONFIG"]["value"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts[config_path.rsplit("/", 1)[0]] == "config"
    assert c["image"] == "kong:3.6"


def test_proxy_service() -> None:
    svc = find(kong.build(tenant()), "Service", "kong-proxy")["spec"]
    ports = {p["port"]: p["targetPort"] for p in svc["ports"]}
    assert ports == {80: "proxy", 443: "proxy-tls"}
    dep = find(kong.build(tenant()), "Deployment", "kong")
    named = {p["name"]: p["containerPort"] for p in container(dep)["ports"]}
    assert named["proxy"] == KONG_PROXY_PORT and named["proxy-tls"] == 8443


def test_scaling_and_suspending_leave_the_pod_template_identical() -> None:
    def dep(changes: dict[str, Any]) -> dict[str, Any]:
        return find(kong.build(tenant(changes)), "Deployment", "kong")

    one, five, off = dep(with_kong(1)), dep(with_kong(5)), dep(with_kong(5, suspend=True))
    assert (one["spec"]["replicas"], five["spec"]["replicas"], off["spec"]["replicas"]) == (1, 5, 0)
    assert one["spec"]["template"] == five["spec"]["template"] == off["spec"]["template"]
    assert {k: v for k, v in one["spec"].items() if k != "replicas"} == {
        k: v for k, v in five["spec"].items() if k != "replicas"
    }
    # Scaling an app is not a routing change either.
    scaled = [{**a, "replicas": 7} if a["name"] == "web" else a for a in APPS]
    assert dep({"components": {"kong": {"replicas": 1}, "apps": scaled}}) == one


def test_a_routing_change_rolls_kong() -> None:
    def digest(changes: dict[str, Any]) -> str:
        dep = find(kong.build(tenant(changes)), "Deployment", "kong")
        return str(dep["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])

    moved = [{**a, "path": "/v2/api"} if a["name"] == "api" else a for a in APPS]
    assert digest({}) != digest({"components": {"apps": moved}})
    # Reordering apps is not a routing change.
    assert digest({}) == digest({"components": {"apps": list(reversed(APPS))}})


def test_workers_follow_the_cpu_limit_rounded_up_not_the_nodes_cores() -> None:
    def workers(limit: str) -> str:
        changes = {"components": {"kong": {"resources": {"limits": {"cpu": limit}}}}}
        dep = find(kong.build(tenant(changes)), "Deployment", "kong")
        value: str = env_of(container(dep))["KONG_NGINX_WORKER_PROCESSES"]["value"]
        return value

    assert workers("500m") == "1"
    assert workers("1") == "1"
    assert workers("1500m") == "2"
    assert workers("4") == "4"
