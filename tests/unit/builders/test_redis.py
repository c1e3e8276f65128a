from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from stackforge_operator.builders import redis
from stackforge_operator.builders import secrets_names as sn
from stackforge_operator.builders.common import ISOLATED_ANNOTATION, REDIS_PORT
from tests.unit.builders.tenants import container, env_of, find, secret_ref, tenant


def test_disabled_redis_builds_nothing() -> None:
    assert redis.build(tenant({"components": {"redis": {"enabled": False}}})) == []


def test_password_by_reference_in_args() -> None:
    c = container(find(redis.build(tenant()), "StatefulSet", "redis"), "redis")
    args = c["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert secret_ref(env_of(c)["REDIS_PASSWORD"]) == (sn.REDIS_SECRET, sn.REDIS_PASSWORD_KEY)
    assert secret_ref(env_of(c)["REDISCLI_AUTH"]) == (sn.REDIS_SECRET, sn.REDIS_PASSWORD_KEY)


def test_statefulset_volume_and_service() -> None:
    t = tenant({"components": {"redis": {"version": "7.4", "storage": "3Gi"}}})
    objs = redis.build(t)
    sts = find(objs, "StatefulSet", "redis")
    assert container(sts, "redis")["image"] == "redis:7.4"
    assert sts["spec"]["replicas"] == 1
    [claim] = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "3Gi"
    data = next(m for m in container(sts, "redis")["volumeMounts"] if m["name"] == "data")
    assert data["mountPath"] == "/data"
    svc = find(objs, "Service", "redis")
    assert svc["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]
    assert [p["port"] for p in svc["spec"]["ports"]] == [REDIS_PORT]
    server = container(sts, "redis")
    assert server["startupProbe"]["periodSeconds"] == 1
    assert server["startupProbe"]["failureThreshold"] == 120  # as its liveness probe's 20 s x 6


def test_suspend() -> None:
    sts = find(redis.build(tenant({"suspend": True})), "StatefulSet", "redis")
    assert sts["spec"]["replicas"] == 0


def test_isolation_replaces_the_pod_once_and_nothing_else_changes() -> None:
    def template(**changes: Any) -> dict[str, Any]:
        sts = find(redis.build(tenant({"components": {"redis": {"enabled": True}},
                                       **changes})), "StatefulSet", "redis")
        found: dict[str, Any] = sts["spec"]["template"]
        return found

    isolated, normal = template(isolate=True), template()
    assert isolated["metadata"]["annotations"] == {ISOLATED_ANNOTATION: "true"}
    assert "annotations" not in normal["metadata"]
    assert isolated["spec"] == normal["spec"]


def test_exporter_names_its_command_where_upstream_and_the_project_image_have_it() -> None:
    sts = find(redis.build(tenant({"components": {"redis": {"enabled": True}}})),
               "StatefulSet", "redis")
    assert container(sts, "redis-exporter")["command"] == ["/redis_exporter"]


def test_redis_loading_its_data_has_started_and_is_not_ready_yet(tmp_path: Path) -> None:
    """While Redis loads its append-only file it answers LOADING: held to PONG, the
    startup probe killed a Redis with a large file at 120 s, and it loaded from the
    start again, for ever. The probes' own commands, run with a redis-cli that
    answers as Redis does."""
    server = container(find(redis.build(tenant({})), "StatefulSet", "redis"), "redis")
    fake = tmp_path / "redis-cli"
    fake.write_text('#!/bin/sh\necho "$REPLY"\n')
    fake.chmod(0o755)

    def passes(probe: str, reply: str) -> bool:
        command = server[probe]["exec"]["command"]
        env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "REPLY": reply}
        return subprocess.run(command, env=env, check=False).returncode == 0

    loading = "LOADING Redis is loading the dataset in memory"
    assert passes("startupProbe", loading) and not passes("readinessProbe", loading)
    assert passes("startupProbe", "PONG") and passes("readinessProbe", "PONG")
    refused = "Could not connect to Redis at 127.0.0.1:6379: Connection refused"
    assert not passes("startupProbe", refused) and not passes("readinessProbe", refused)
