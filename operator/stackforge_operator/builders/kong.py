"""Kong in DB-less mode: the tenant's only way in, routing to every app service.

The declarative config lives in the ConfigMap ``kong-config``; the pod template
carries its sha256, so a routing change rolls the gateway while a replica
change (``kubectl scale sft/NAME``) touches ``spec.replicas`` and nothing else.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import yaml

from stackforge_operator import image_catalog
from stackforge_operator.builders.common import (
    KONG_PROXY_PORT,
    KONG_PROXY_TLS_PORT,
    KONG_STATUS_PORT,
    Manifest,
    config_hash,
    config_map,
    config_map_volume,
    container_port,
    container_security_context,
    deployment,
    empty_dir,
    env,
    labels,
    metadata,
    mount,
    pod_spec,
    pod_template,
    replicas,
    resources,
    selector_labels,
    service,
    service_dns,
    service_port,
    startup_probe,
)
from stackforge_operator.models.common import parse_quantity
from stackforge_operator.models.effective import EffectiveTenant

COMPONENT = "kong"
NAME = "kong"
CONFIG = "kong-config"
PROXY_SERVICE = "kong-proxy"
CONFIG_FILE = "kong.yml"
CONFIG_DIR = "/kong/declarative"
PREFIX_DIR = "/kong_prefix"
# uid/gid of the "kong" user in the official image.
KONG_UID = 1000
HTTP_PORT = 80
HTTPS_PORT = 443


def image(t: EffectiveTenant) -> str:
    return image_catalog.current().kong_image(t.kong.version)


def declarative_config(t: EffectiveTenant) -> dict[str, Any]:
    """One Kong service per app, at its Service's DNS name, with one prefix route."""
    services = [
        {
            "name": app.name,
            "url": f"http://{service_dns(t, app.name)}:{app.port}",
            "routes": [{"name": app.name, "paths": [app.path], "strip_path": False}],
        }
        # Sorted by name: reordering apps in the spec must not roll the gateway.
        for app in sorted(t.apps, key=lambda a: a.name)
    ]
    # The prometheus plugin serves /metrics on the status listener
    # (builders/exporters.py): requests, status codes and latency per service.
    plugins = [{"name": "prometheus", "config": {
        "status_code_metrics": True, "latency_metrics": True,
        "bandwidth_metrics": True, "upstream_health_metrics": True}}]
    return {"_format_version": "3.0", "services": services, "plugins": plugins}


def render_config(t: EffectiveTenant) -> str:
    # Rendered as JSON first (fast, and a dictionary key), then as YAML once per
    # distinct configuration: PyYAML's emitter was a sixth of an idle resync's CPU.
    return _as_yaml(json.dumps(declarative_config(t), sort_keys=True))


@functools.lru_cache(maxsize=4096)
def _as_yaml(config_json: str) -> str:
    return yaml.safe_dump(json.loads(config_json), sort_keys=True, default_flow_style=False)


def build(t: EffectiveTenant) -> list[Manifest]:
    # Kong is always on: it is the tenant's only ingress (see models/tiers.py).
    rendered = render_config(t)
    return [
        config_map(t, CONFIG, COMPONENT, {CONFIG_FILE: rendered}),
        service(
            t,
            PROXY_SERVICE,
            COMPONENT,
            selector=selector_labels(t, COMPONENT),
            ports=[
                service_port("http", HTTP_PORT, "proxy"),
                service_port("https", HTTPS_PORT, "proxy-tls"),
            ],
        ),
        _deployment(t, config_hash(rendered)),
    ]


def worker_processes(t: EffectiveTenant) -> int:
    """One nginx worker per core of Kong's CPU limit, rounded up.

    Kong's default ("auto") starts one per core of the node: on a 64-core
    node, 64 workers share a limit of one core, each with its own memory and
    connection pools, and the container is throttled or killed for memory.
    """
    return max(1, math.ceil(parse_quantity(t.kong.resources.cpu_limit)))


def _container(t: EffectiveTenant) -> dict[str, Any]:
    ready = {"httpGet": {"path": "/status/ready", "port": "status"}, "periodSeconds": 10}
    alive = {"httpGet": {"path": "/status", "port": "status"}, "periodSeconds": 20,
             "failureThreshold": 6}
    return {
        "name": "kong",
        "image": image(t),
        "env": [
            env("KONG_DATABASE", "off"),
            env("KONG_DECLARATIVE_CONFIG", f"{CONFIG_DIR}/{CONFIG_FILE}"),
            env("KONG_PREFIX", PREFIX_DIR),
            env(
                "KONG_PROXY_LISTEN", f"0.0.0.0:{KONG_PROXY_PORT}, 0.0.0.0:{KONG_PROXY_TLS_PORT} ssl"
            ),
            env("KONG_STATUS_LISTEN", f"0.0.0.0:{KONG_STATUS_PORT}"),
            # No Admin API: the declarative config is the only way to change Kong.
            env("KONG_ADMIN_LISTEN", "off"),
            env("KONG_PROXY_ACCESS_LOG", "/dev/stdout"),
            env("KONG_PROXY_ERROR_LOG", "/dev/stderr"),
            env("KONG_NGINX_WORKER_PROCESSES", str(worker_processes(t))),
        ],
        "ports": [
            container_port("proxy", KONG_PROXY_PORT),
            container_port("proxy-tls", KONG_PROXY_TLS_PORT),
            container_port("status", KONG_STATUS_PORT),
        ],
        "readinessProbe": ready,
        "startupProbe": startup_probe(ready, alive),
        "livenessProbe": alive,
        # Keep serving while the pod leaves the Service endpoints, then drain.
        "lifecycle": {"preStop": {"exec": {"command": ["kong", "quit", "--wait", "15"]}}},
        "resources": resources(t.kong.resources),
        "securityContext": container_security_context(read_only_root_filesystem=True),
        "volumeMounts": [
            mount("config", CONFIG_DIR, read_only=True),
            mount("prefix", PREFIX_DIR),
            mount("tmp", "/tmp"),  # noqa: S108 - a private emptyDir
        ],
    }


def _deployment(t: EffectiveTenant, digest: str) -> Manifest:
    spec = pod_spec(
        containers=[_container(t)],
        user_id=KONG_UID,
        volumes=[config_map_volume("config", CONFIG), empty_dir("prefix"), empty_dir("tmp")],
    )
    return deployment(
        metadata(t, NAME, COMPONENT),
        # The target of the tenant's scale subresource: only this number moves.
        replicas_=replicas(t, t.kong.replicas),
        selector=selector_labels(t, COMPONENT),
        template=pod_template(labels(t, COMPONENT), spec, config=digest),
    )
