"""The tenant's application services: Deployment, Service and, if autoscaled, an HPA.

Apps find the stack's components through environment variables; credentials
come from the generated Secrets by reference only.
"""

from __future__ import annotations

from typing import Any

from stackforge_operator.builders import consul, kafka, pooler, postgres, redis
from stackforge_operator.builders.common import (
    POOLER_PORT,
    POSTGRES_PORT,
    REDIS_PORT,
    Manifest,
    app_labels,
    app_metadata,
    app_selector_labels,
    container_port,
    container_security_context,
    deployment,
    env,
    pod_spec,
    pod_template,
    replicas,
    resources,
    secret_env,
    startup_probe,
)
from stackforge_operator.builders.secrets_names import (
    POSTGRES_PASSWORD_KEY,
    POSTGRES_SECRET,
    POSTGRES_USER_KEY,
    REDIS_PASSWORD_KEY,
    REDIS_SECRET,
)
from stackforge_operator.models.effective import App, EffectiveTenant

# Runbook: "CPU usage > 80 % for 5 min": scale down only after five quiet minutes.
SCALE_DOWN_STABILIZATION_SECONDS = 300
PORT_NAME = "http"


def build(t: EffectiveTenant) -> list[Manifest]:
    out: list[Manifest] = []
    for app in t.apps:
        out += [_service(t, app), _deployment(t, app)]
        if app.autoscaling:
            out.append(horizontal_pod_autoscaler(t, app))
    return out


def connection_env(t: EffectiveTenant) -> list[dict[str, Any]]:
    """Where the enabled components are, as the apps see them (short in-namespace names)."""
    out: list[dict[str, Any]] = []
    pg = t.postgres
    if pg.enabled:
        # The pooler fronts the primary when it runs; apps never need to know which.
        host, port = (
            (pooler.NAME, POOLER_PORT) if pg.pooler.enabled else (postgres.NAME, POSTGRES_PORT)
        )
        out += [
            env("DATABASE_HOST", host),
            env("DATABASE_PORT", str(port)),
            env("DATABASE_NAME", pg.database),
            secret_env("DATABASE_USER", POSTGRES_SECRET, POSTGRES_USER_KEY),
            secret_env("DATABASE_PASSWORD", POSTGRES_SECRET, POSTGRES_PASSWORD_KEY),
        ]
        if pg.read_replicas > 0:
            # Present whether there is one replica or five: only turning read
            # replicas on or off changes (and so rolls) the app pods.
            out += [
                env("DATABASE_READ_HOST", postgres.READ_SERVICE),
                env("DATABASE_READ_PORT", str(POSTGRES_PORT)),
            ]
    if t.redis.enabled:
        out += [
            env("REDIS_HOST", redis.NAME),
            env("REDIS_PORT", str(REDIS_PORT)),
            # No password in the URL: REDIS_PASSWORD carries it, by reference.
            env("REDIS_URL", f"redis://{redis.NAME}:{REDIS_PORT}"),
            secret_env("REDIS_PASSWORD", REDIS_SECRET, REDIS_PASSWORD_KEY),
        ]
    if t.kafka.enabled:
        out.append(env("KAFKA_BOOTSTRAP_SERVERS", kafka.BOOTSTRAP_SERVERS))
    if t.consul.enabled:
        out.append(env("CONSUL_HTTP_ADDR", consul.HTTP_ADDR))
    return out


def app_env(t: EffectiveTenant, app: App) -> list[dict[str, Any]]:
    """Connection settings, then the app's own variables (sorted by name).

    The app's own value wins over a generated one of the same name, so a
    tenant can point an app elsewhere; the generated entry is then dropped
    rather than listed twice.
    """
    own = [env(k, v) for k, v in sorted(app.env.items())]
    return [e for e in connection_env(t) if e["name"] not in app.env] + own


def _probe(app: App) -> dict[str, Any]:
    handler: dict[str, Any] = (
        {"httpGet": {"path": app.health_check_path, "port": PORT_NAME}}
        if app.health_check_path is not None
        else {"tcpSocket": {"port": PORT_NAME}}
    )
    return {**handler, "periodSeconds": 10, "failureThreshold": 3}


def _deployment(t: EffectiveTenant, app: App) -> Manifest:
    probe = _probe(app)
    container = {
        "name": "app",
        "image": app.image,
        "env": app_env(t, app),
        "ports": [container_port(PORT_NAME, app.port)],
        "readinessProbe": probe,
        "startupProbe": startup_probe(probe),
        "resources": resources(app.resources),
        # Root filesystem left writable: tenant images are not ours to know.
        "securityContext": container_security_context(),
    }
    # The image's own user unless the spec names one; never root (the kubelet
    # refuses to start a runAsNonRoot container whose user is 0).
    spec = pod_spec(containers=[container], user_id=None)
    if app.run_as_user is not None:
        spec["securityContext"]["runAsUser"] = app.run_as_user
    if app.run_as_group is not None:
        spec["securityContext"]["runAsGroup"] = app.run_as_group
    return deployment(
        app_metadata(t, app.name),
        replicas_=desired_replicas(t, app),
        selector=app_selector_labels(t, app.name),
        template=pod_template(app_labels(t, app.name), spec),
    )


def desired_replicas(t: EffectiveTenant, app: App) -> int | None:
    """``None``: the HPA owns the count and the operator must not fight it.

    Suspending still writes 0; an HPA does not scale a workload up from zero,
    and leaving the field out again on resume hands the count back to it.
    """
    if t.writes_stopped:
        # An in-place recovery: nothing may write to the database meanwhile.
        return 0
    if app.autoscaling and not t.suspend:
        return None
    return replicas(t, app.replicas)


def horizontal_pod_autoscaler(t: EffectiveTenant, app: App) -> Manifest:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": app_metadata(t, app.name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app.name},
            "minReplicas": app.min_replicas,
            "maxReplicas": app.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": app.target_cpu_utilization,
                        },
                    },
                }
            ],
            "behavior": {
                "scaleDown": {"stabilizationWindowSeconds": SCALE_DOWN_STABILIZATION_SECONDS}
            },
        },
    }


def _service(t: EffectiveTenant, app: App) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": app_metadata(t, app.name),
        "spec": {
            "type": "ClusterIP",
            "selector": app_selector_labels(t, app.name),
            "ports": [
                {"name": PORT_NAME, "port": app.port, "targetPort": PORT_NAME, "protocol": "TCP"}
            ],
        },
    }
