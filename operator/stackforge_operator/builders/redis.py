"""Redis: one password-protected instance with an append-only file on a volume."""

from __future__ import annotations

from stackforge_operator import image_catalog
from stackforge_operator.builders import exporters
from stackforge_operator.builders.common import (
    REDIS_PORT,
    Manifest,
    container_port,
    container_security_context,
    empty_dir,
    labels,
    mount,
    pod_spec,
    pod_template,
    replicas,
    resources,
    secret_env,
    selector_labels,
    service,
    service_port,
    startup_probe,
    stateful_set,
    volume_claim_template,
)
from stackforge_operator.builders.secrets_names import REDIS_PASSWORD_KEY, REDIS_SECRET
from stackforge_operator.models.effective import EffectiveTenant

COMPONENT = "redis"
NAME = "redis"
# uid/gid of the "redis" user in the official Debian-based image.
REDIS_UID = 999
DATA_DIR = "/data"


def image(t: EffectiveTenant) -> str:
    return image_catalog.current().redis_image(t.redis.version)


def build(t: EffectiveTenant) -> list[Manifest]:
    if not t.redis.enabled:
        return []
    return [
        service(
            t,
            NAME,
            COMPONENT,
            selector=selector_labels(t, COMPONENT),
            ports=[service_port("redis", REDIS_PORT)],
        ),
        _stateful_set(t),
    ]


def _stateful_set(t: EffectiveTenant) -> Manifest:
    answering = {"exec": {"command": ["sh", "-c", "redis-cli ping | grep -q PONG"]},
                 "periodSeconds": 10, "timeoutSeconds": 5}
    alive = {"tcpSocket": {"port": "redis"}, "periodSeconds": 20, "failureThreshold": 6}
    # Started once it answers at all: while it loads its append-only file it answers
    # LOADING (not PONG), for minutes with a large one on a small CPU limit. Held
    # to PONG, the startup probe killed it at the liveness bound (120 s) and it
    # loaded from the start again, for ever. Readiness still waits for PONG.
    started = {**answering,
               "exec": {"command": ["sh", "-c", "redis-cli ping | grep -qE '^(PONG|LOADING)'"]}}
    container = {
        "name": "redis",
        "image": image(t),
        # $(REDIS_PASSWORD) is expanded by the kubelet from the Secret-backed
        # env var: the manifest names the variable, never the value.
        "args": [
            "redis-server",
            *("--requirepass", "$(REDIS_PASSWORD)"),
            *("--dir", DATA_DIR),
            *("--appendonly", "yes"),
            *("--port", str(REDIS_PORT)),
        ],
        "env": [
            secret_env("REDIS_PASSWORD", REDIS_SECRET, REDIS_PASSWORD_KEY),
            # redis-cli in the probe authenticates from this variable.
            secret_env("REDISCLI_AUTH", REDIS_SECRET, REDIS_PASSWORD_KEY),
        ],
        "ports": [container_port("redis", REDIS_PORT)],
        "readinessProbe": answering,
        "startupProbe": startup_probe(started, alive),
        "livenessProbe": alive,
        "resources": resources(t.redis.resources),
        "securityContext": container_security_context(read_only_root_filesystem=True),
        "volumeMounts": [mount("data", DATA_DIR), mount("tmp", "/tmp")],  # noqa: S108
    }
    spec = pod_spec(containers=[container, exporters.redis_exporter()], user_id=REDIS_UID,
                    volumes=[empty_dir("tmp")])
    return stateful_set(
        t,
        NAME,
        COMPONENT,
        replicas_=replicas(t, t.redis.replicas),
        # A single instance nobody addresses by pod name: the client Service
        # governs the set instead of an extra headless one.
        service_name=NAME,
        # Isolation closes the sessions already open by replacing the pod (Redis
        # has no notion of "network clients only"; its data is on the volume):
        # NetworkPolicy alone leaves established connections up on some dataplanes.
        template=pod_template(labels(t, COMPONENT), spec, isolated=t.isolate),
        claims=[volume_claim_template("data", t.redis.storage)],
    )
