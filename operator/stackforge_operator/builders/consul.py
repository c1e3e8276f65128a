"""Consul servers, and the registration of every app service in its catalog.

Each app is registered by a service definition in the ConfigMap
``consul-services`` (loaded from the agents' config dir) with its Kubernetes
Service name as address: the Service spreads requests over all the app's
ready pods, so scaling an app never touches Consul's configuration.
"""

from __future__ import annotations

from typing import Any

from stackforge_operator import image_catalog
from stackforge_operator.builders import exporters
from stackforge_operator.builders.common import (
    CONSUL_HTTP_PORT,
    CONSUL_SERF_LAN_PORT,
    CONSUL_SERVER_PORT,
    Manifest,
    canonical_json,
    config_hash,
    config_map,
    config_map_volume,
    container_port,
    container_security_context,
    empty_dir,
    field_env,
    labels,
    mount,
    pod_spec,
    pod_template,
    replicas,
    resources,
    secret_env,
    selector_labels,
    service,
    service_dns,
    service_port,
    startup_probe,
    stateful_set,
    volume_claim_template,
)
from stackforge_operator.builders.secrets_names import CONSUL_GOSSIP_KEY, CONSUL_SECRET
from stackforge_operator.models.effective import App, EffectiveTenant

COMPONENT = "consul"
NAME = "consul"
HEADLESS = "consul-headless"
SERVICES_CONFIG = "consul-services"
SERVICES_FILE = "services.json"
# uid of the "consul" user in the hashicorp/consul image.
CONSUL_UID = 100
DATA_DIR = "/consul/data"
CONFIG_DIR = "/consul/config"
CHECK_INTERVAL = "10s"
CHECK_TIMEOUT = "2s"


def image(t: EffectiveTenant) -> str:
    return image_catalog.current().consul_image(t.consul.version)


# What CONSUL_HTTP_ADDR holds for the apps: the client Service, same namespace.
HTTP_ADDR = f"{NAME}:{CONSUL_HTTP_PORT}"


def service_definition(t: EffectiveTenant, app: App) -> dict[str, Any]:
    """One app in Consul's catalog: its Service address and a health check."""
    address = service_dns(t, app.name)
    check: dict[str, Any] = {
        "id": f"{app.name}-ready",
        "name": f"{app.name} readiness",
        "interval": CHECK_INTERVAL,
        "timeout": CHECK_TIMEOUT,
    }
    if app.health_check_path is not None:
        check["http"] = f"http://{address}:{app.port}{app.health_check_path}"
    else:
        check["tcp"] = f"{address}:{app.port}"
    return {
        "id": app.name,
        "name": app.name,
        "address": address,
        "port": app.port,
        "tags": ["stackforge", f"tenant-{t.name}"],
        "meta": {"tenant": t.name, "path": app.path},
        "checks": [check],
    }


def services_json(t: EffectiveTenant) -> str:
    # Sorted by name: reordering apps in the spec must not roll the servers.
    apps = sorted(t.apps, key=lambda a: a.name)
    return canonical_json({"services": [service_definition(t, a) for a in apps]})


def build(t: EffectiveTenant) -> list[Manifest]:
    if not t.consul.enabled:
        return []
    rendered = services_json(t)
    sel = selector_labels(t, COMPONENT)
    return [
        config_map(t, SERVICES_CONFIG, COMPONENT, {SERVICES_FILE: rendered}),
        service(
            t,
            HEADLESS,
            COMPONENT,
            selector=sel,
            headless=True,
            ports=[
                service_port("server", CONSUL_SERVER_PORT),
                service_port("serf-lan-tcp", CONSUL_SERF_LAN_PORT),
                service_port("serf-lan-udp", CONSUL_SERF_LAN_PORT, protocol="UDP"),
                service_port("http", CONSUL_HTTP_PORT),
            ],
        ),
        service(t, NAME, COMPONENT, selector=sel, ports=[service_port("http", CONSUL_HTTP_PORT)]),
        _stateful_set(t, config_hash(rendered)),
    ]


def _args(t: EffectiveTenant) -> list[str]:
    # From the configured count, not replicas(): suspending must not touch the template.
    n = t.consul.replicas
    joins = [f"-retry-join={NAME}-{i}.{service_dns(t, HEADLESS)}" for i in range(n)]
    return [
        "agent",
        "-server",
        f"-bootstrap-expect={n}",
        f"-data-dir={DATA_DIR}",
        f"-config-dir={CONFIG_DIR}",
        "-bind=0.0.0.0",
        "-advertise=$(POD_IP)",
        "-client=0.0.0.0",
        "-ui",
        "-disable-host-node-id",
        "-node=$(POD_NAME)",
        # Expanded by the kubelet from the Secret-backed variable.
        "-encrypt=$(CONSUL_GOSSIP_KEY)",
        *joins,
    ]


def _stateful_set(t: EffectiveTenant, digest: str) -> Manifest:
    knows_a_leader = {"exec": {"command": ["consul", "operator", "raft", "list-peers"]},
                      "periodSeconds": 10, "timeoutSeconds": 5}
    container = {
        "name": "consul",
        "image": image(t),
        "command": ["consul"],
        "args": _args(t),
        "env": [
            field_env("POD_IP", "status.podIP"),
            field_env("POD_NAME", "metadata.name"),
            secret_env("CONSUL_GOSSIP_KEY", CONSUL_SECRET, CONSUL_GOSSIP_KEY),
        ],
        "ports": [
            container_port("server", CONSUL_SERVER_PORT),
            container_port("serf-lan-tcp", CONSUL_SERF_LAN_PORT),
            container_port("serf-lan-udp", CONSUL_SERF_LAN_PORT, "UDP"),
            container_port("http", CONSUL_HTTP_PORT),
        ],
        # Ready only while this server knows a leader: the raft configuration is
        # read consistently, which fails with "No cluster leader" when there is
        # none. (/v1/status/leader answers 200 with an empty body then.) The
        # headless Service publishes unready pods, so servers still find each
        # other to elect one; status.py counts ready servers against the quorum.
        "readinessProbe": knows_a_leader,
        "startupProbe": startup_probe(knows_a_leader),
        "resources": resources(t.consul.resources),
        "securityContext": container_security_context(read_only_root_filesystem=True),
        "volumeMounts": [
            mount("config", CONFIG_DIR, read_only=True),
            mount("data", DATA_DIR),
            mount("tmp", "/tmp"),  # noqa: S108 - a private emptyDir
        ],
    }
    spec = pod_spec(
        containers=[container, exporters.consul_exporter()],
        user_id=CONSUL_UID,
        volumes=[config_map_volume("config", SERVICES_CONFIG), empty_dir("tmp")],
    )
    return stateful_set(
        t,
        NAME,
        COMPONENT,
        replicas_=replicas(t, t.consul.replicas),
        service_name=HEADLESS,
        # Agents read service definitions at start: a new app rolls the servers.
        template=pod_template(labels(t, COMPONENT), spec, config=digest),
        claims=[volume_claim_template("data", t.consul.storage)],
        parallel=True,
    )
