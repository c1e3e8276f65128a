from __future__ import annotations

from typing import Any

import pytest

from stackforge_operator.builders import pooler
from stackforge_operator.builders import secrets_names as sn
from stackforge_operator.builders.common import CONFIG_HASH_ANNOTATION, POOLER_PORT
from tests.unit.builders.image_programs import IMAGES, script_required
from tests.unit.builders.tenants import container, env_of, find, secret_ref, tenant

POOL = {"poolMode": "session", "defaultPoolSize": 40, "maxClientConnections": 400}


def with_pool(**changes: object) -> dict[str, object]:
    return {"components": {"postgres": {"pooler": {"enabled": True, **POOL, **changes}}}}


def test_off_when_pooler_or_postgres_is_off() -> None:
    assert pooler.build(tenant({"components": {"postgres": {"pooler": {"enabled": False}}}})) == []
    off = {"components": {"postgres": {"enabled": False, "pooler": {"enabled": True}}}}
    assert pooler.build(tenant(off)) == []


def test_pool_sizes_from_the_spec_in_pgbouncer_ini() -> None:
    ini = find(pooler.build(tenant(with_pool())), "ConfigMap", "pooler-config")["data"][
        "pgbouncer.ini"
    ]
    settings = dict(line.split(" = ", 1) for line in ini.splitlines() if " = " in line)
    assert settings["pool_mode"] == "session"
    assert settings["default_pool_size"] == "40"
    assert settings["max_client_conn"] == "400"
    assert settings["listen_port"] == str(POOLER_PORT)
    assert settings["acme"] == "host=postgres port=5432 dbname=acme"
    assert "password" not in ini.lower()


def test_pool_sizes_default_from_the_tier() -> None:
    t = tenant({"tier": "Enterprise"})
    ini = find(pooler.build(t), "ConfigMap", "pooler-config")["data"]["pgbouncer.ini"]
    assert "default_pool_size = 100" in ini and "max_client_conn = 2000" in ini
    assert find(pooler.build(t), "Deployment", "pooler")["spec"]["replicas"] == 2


def test_auth_from_the_secret_into_a_memory_volume() -> None:
    dep = find(pooler.build(tenant(with_pool())), "Deployment", "pooler")
    pod = dep["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    env = env_of(init)
    assert secret_ref(env["DB_USER"]) == (sn.POSTGRES_SECRET, sn.POSTGRES_USER_KEY)
    assert secret_ref(env["DB_PASSWORD"]) == (sn.POSTGRES_SECRET, sn.POSTGRES_PASSWORD_KEY)
    auth = next(v for v in pod["volumes"] if v["name"] == "auth")
    assert auth["emptyDir"]["medium"] == "Memory"
    # The image's program writes the file pgbouncer.ini names, on that volume.
    assert init["command"] == [pooler.USERLIST_PROGRAM]
    assert script_required(IMAGES / "pgbouncer" / "stackforge-pgbouncer-userlist.sh") <= set(env)
    assert env["USERLIST_FILE"]["value"] == pooler.AUTH_FILE
    [mounted] = [m for m in init["volumeMounts"] if m["name"] == "auth"]
    assert pooler.AUTH_FILE.startswith(mounted["mountPath"] + "/")


def test_a_pooler_pod_being_replaced_serves_until_the_service_forgot_it() -> None:
    """Stopped at once, it refused the connections kube-proxy still sent its way."""
    dep = find(pooler.build(tenant(with_pool())), "Deployment", "pooler")
    pod = dep["spec"]["template"]["spec"]
    bouncer = container(dep, "pgbouncer")
    assert bouncer["lifecycle"]["preStop"] == {
        "exec": {"command": ["sleep", str(pooler.DRAIN_SECONDS)]}}
    # The sleep and PgBouncer's safe shutdown both fit the grace period.
    assert pod.get("terminationGracePeriodSeconds", 30) / 2 > pooler.DRAIN_SECONDS


def test_service_and_port() -> None:
    objs = pooler.build(tenant(with_pool()))
    svc = find(objs, "Service", "pooler")
    assert [p["port"] for p in svc["spec"]["ports"]] == [POOLER_PORT]
    dep = find(objs, "Deployment", "pooler")
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert container(dep)["ports"][0]["containerPort"] == POOLER_PORT


def test_the_pooler_is_seen_ready_at_once_and_restarted_as_late_as_before() -> None:
    pgbouncer = container(find(pooler.build(tenant(with_pool())), "Deployment", "pooler"),
                          "pgbouncer")
    startup, liveness = pgbouncer["startupProbe"], pgbouncer["livenessProbe"]
    assert startup["tcpSocket"] == pgbouncer["readinessProbe"]["tcpSocket"]
    assert startup["periodSeconds"] == 1
    # The liveness probe waits for the startup probe: one that never passes
    # restarts the container after as long as the liveness probe would have.
    assert startup["failureThreshold"] == liveness["periodSeconds"] * liveness[
        "failureThreshold"] == 120


def test_config_change_rolls_the_pooler() -> None:
    def template(**changes: object) -> Any:
        return find(pooler.build(tenant(with_pool(**changes))), "Deployment", "pooler")["spec"][
            "template"
        ]

    base = template()
    # Scaling changes each pooler's share of the primary's connections, so
    # the pods take the new configuration too.
    for changed in (template(defaultPoolSize=41), template(replicas=3)):
        digest = changed["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
        assert digest != base["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
        assert {**changed, "metadata": base["metadata"]} == base  # nothing else moved


def test_suspending_does_not_change_the_pooler_configuration() -> None:
    running = find(pooler.build(tenant(with_pool(replicas=2))), "ConfigMap", "pooler-config")
    suspended = find(pooler.build(tenant({**with_pool(replicas=2), "suspend": True})),
                     "ConfigMap", "pooler-config")
    assert suspended["data"] == running["data"]


def ini_settings(manifests: list[dict[str, Any]]) -> dict[str, str]:
    ini = find(manifests, "ConfigMap", "pooler-config")["data"]["pgbouncer.ini"]
    return dict(line.split(" = ", 1) for line in ini.splitlines() if " = " in line)


@pytest.mark.parametrize("spec", [
    {"tier": "Growth"},
    {"tier": "Enterprise"},
    with_pool(replicas=1, defaultPoolSize=10000, maxClientConnections=10000),
    with_pool(replicas=3, defaultPoolSize=100),
    with_pool(replicas=10),
])
def test_every_pooler_at_once_stays_within_postgres_connections(spec: dict[str, Any]) -> None:
    """The poolers together, one more during a rolling update, never ask the primary
    for more than its max_connections leaves once its superusers' reserved slots
    and the direct clients' share are set aside."""
    t = tenant(spec)
    built = pooler.build(t)
    settings = ini_settings(built)
    running_at_once = find(built, "Deployment", "pooler")["spec"]["replicas"] + 1
    per_pooler = int(settings["max_db_connections"])
    assert per_pooler >= 1
    assert per_pooler * running_at_once <= (
        pooler.POSTGRES_MAX_CONNECTIONS - pooler.POSTGRES_SUPERUSER_RESERVED
        - pooler.DIRECT_CONNECTIONS)
