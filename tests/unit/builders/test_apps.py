from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from stackforge_operator.builders import apps
from stackforge_operator.builders import secrets_names as sn
from stackforge_operator.builders.common import APP_LABEL, selector_labels
from stackforge_operator.models.tenant import AppServiceSpec
from tests.unit.builders.tenants import (
    BASE,
    container,
    env_of,
    find,
    names,
    secret_ref,
    tenant,
)

APPS: list[dict[str, Any]] = BASE["components"]["apps"]


def app_env(changes: dict[str, Any] | None = None, app: str = "web") -> dict[str, dict[str, Any]]:
    return env_of(container(find(apps.build(tenant(changes)), "Deployment", app)))


def test_one_deployment_and_service_per_app_and_hpa_only_when_autoscaled() -> None:
    objs = apps.build(tenant())
    assert names(objs, "Deployment") == ["api", "web", "worker"]
    assert names(objs, "Service") == ["api", "web", "worker"]
    assert names(objs, "HorizontalPodAutoscaler") == ["api"]


def test_no_apps_nothing() -> None:
    assert apps.build(tenant({"components": {"apps": []}})) == []


def test_autoscaled_deployment_leaves_replicas_to_the_hpa() -> None:
    objs = apps.build(tenant())
    assert "replicas" not in find(objs, "Deployment", "api")["spec"]
    assert find(objs, "Deployment", "web")["spec"]["replicas"] == 2
    assert find(objs, "Deployment", "worker")["spec"]["replicas"] == 1


def test_suspend_writes_zero_even_under_an_hpa() -> None:
    objs = apps.build(tenant({"suspend": True}))
    for name in ("api", "web", "worker"):
        assert find(objs, "Deployment", name)["spec"]["replicas"] == 0
    # The HPA stays: it does not scale up from zero, and keeps its bounds for the resume.
    assert names(objs, "HorizontalPodAutoscaler") == ["api"]


def test_hpa_fields() -> None:
    custom = [
        {
            **APPS[0],
            "autoscaling": {
                "enabled": True,
                "minReplicas": 3,
                "maxReplicas": 9,
                "targetCPUUtilizationPercentage": 70,
            },
        }
    ]
    hpa = find(
        apps.build(tenant({"components": {"apps": custom}})), "HorizontalPodAutoscaler", "api"
    )
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (3, 9)
    [metric] = spec["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_hpa_defaults_to_the_runbook_threshold_and_tier_bounds() -> None:
    plain = [{"name": "api", "image": "registry.example.com/acme/api:1", "port": 8080}]
    hpa = find(
        apps.build(tenant({"tier": "Enterprise", "components": {"apps": plain}})),
        "HorizontalPodAutoscaler",
        "api",
    )["spec"]
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 80
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 12)


def test_database_through_the_pooler_when_it_runs() -> None:
    env = app_env({"components": {"postgres": {"pooler": {"enabled": True}}}})
    assert env["DATABASE_HOST"]["value"] == "pooler"
    assert env["DATABASE_PORT"]["value"] == "6432"
    assert env["DATABASE_NAME"]["value"] == "acme"
    assert secret_ref(env["DATABASE_USER"]) == (sn.POSTGRES_SECRET, sn.POSTGRES_USER_KEY)
    assert secret_ref(env["DATABASE_PASSWORD"]) == (sn.POSTGRES_SECRET, sn.POSTGRES_PASSWORD_KEY)


def test_database_direct_without_the_pooler() -> None:
    env = app_env({"components": {"postgres": {"pooler": {"enabled": False}}}})
    assert (env["DATABASE_HOST"]["value"], env["DATABASE_PORT"]["value"]) == ("postgres", "5432")


def test_read_host_only_with_read_replicas() -> None:
    with_replicas = app_env({"components": {"postgres": {"readReplicas": 2}}})
    assert with_replicas["DATABASE_READ_HOST"]["value"] == "postgres-read"
    assert "DATABASE_READ_HOST" not in app_env({"components": {"postgres": {"readReplicas": 0}}})
    # One replica or three: the apps' template does not move.
    one = find(
        apps.build(tenant({"components": {"postgres": {"readReplicas": 1}}})), "Deployment", "web"
    )
    three = find(
        apps.build(tenant({"components": {"postgres": {"readReplicas": 3}}})), "Deployment", "web"
    )
    assert one == three


def test_component_settings_follow_what_is_enabled() -> None:
    on = app_env(
        {
            "components": {
                "redis": {"enabled": True},
                "kafka": {"enabled": True},
                "consul": {"enabled": True},
            }
        }
    )
    assert on["REDIS_HOST"]["value"] == "redis" and on["REDIS_PORT"]["value"] == "6379"
    assert on["REDIS_URL"]["value"] == "redis://redis:6379"
    assert secret_ref(on["REDIS_PASSWORD"]) == (sn.REDIS_SECRET, sn.REDIS_PASSWORD_KEY)
    assert on["KAFKA_BOOTSTRAP_SERVERS"]["value"] == "kafka:9092"
    assert on["CONSUL_HTTP_ADDR"]["value"] == "consul:8500"

    off = app_env(
        {
            "components": {
                "postgres": {"enabled": False},
                "redis": {"enabled": False},
                "kafka": {"enabled": False},
                "consul": {"enabled": False},
            }
        }
    )
    assert off == {}


def test_own_env_sorted_after_the_generated_and_winning_over_it() -> None:
    custom = [{**APPS[1], "env": {"ZED": "1", "DATABASE_HOST": "external-db", "ALPHA": "2"}}]
    c = container(find(apps.build(tenant({"components": {"apps": custom}})), "Deployment", "web"))
    names_in_order = [e["name"] for e in c["env"]]
    assert names_in_order[-3:] == ["ALPHA", "DATABASE_HOST", "ZED"]
    assert env_of(c)["DATABASE_HOST"]["value"] == "external-db"


def test_readiness_probe_http_or_tcp() -> None:
    objs = apps.build(tenant())
    api = container(find(objs, "Deployment", "api"))["readinessProbe"]
    assert api["httpGet"] == {"path": "/healthz", "port": "http"}
    worker = container(find(objs, "Deployment", "worker"))["readinessProbe"]
    assert worker["tcpSocket"] == {"port": "http"} and "httpGet" not in worker


def test_selectors_carry_the_app_label() -> None:
    t = tenant()
    objs = apps.build(t)
    for name in ("api", "web", "worker"):
        dep, svc = find(objs, "Deployment", name), find(objs, "Service", name)
        selector = dep["spec"]["selector"]["matchLabels"]
        assert selector == {**selector_labels(t, "app"), APP_LABEL: name}
        assert svc["spec"]["selector"] == selector
        assert selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        port = container(dep)["ports"][0]
        assert port["containerPort"] == svc["spec"]["ports"][0]["port"]


def test_scaling_a_fixed_app_changes_only_replicas() -> None:
    def web(n: int) -> dict[str, Any]:
        scaled = [{**a, "replicas": n} if a["name"] == "web" else a for a in APPS]
        return find(apps.build(tenant({"components": {"apps": scaled}})), "Deployment", "web")

    two, six = web(2), web(6)
    assert two["spec"]["replicas"] == 2 and six["spec"]["replicas"] == 6
    assert {**two["spec"], "replicas": 0} == {**six["spec"], "replicas": 0}


def test_security_context_knob_sets_user_and_group_within_restricted() -> None:
    changes = {"components": {"apps": [{**APPS[2], "securityContext": {
        "runAsUser": 10001, "runAsGroup": 0}}]}}
    pod = find(apps.build(tenant(changes)), "Deployment", "worker")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["runAsGroup"] == 0
    assert pod["securityContext"]["runAsNonRoot"] is True
    # Without it, the image's own (non-root) user: no id is forced.
    default = find(apps.build(tenant()), "Deployment", "worker")["spec"]["template"]["spec"]
    assert "runAsUser" not in default["securityContext"]
    assert "runAsGroup" not in default["securityContext"]


def test_no_app_may_take_a_name_of_the_stacks_own_objects() -> None:
    """Which names those are: test_all_children.test_component_object_names_are_reserved."""
    with pytest.raises(ValidationError, match="the stack's own objects use this name"):
        AppServiceSpec.model_validate({"name": "postgres-metrics", "image": "r.example/a:1",
                                       "port": 80})
