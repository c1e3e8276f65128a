"""Effective tenants for the builder tests, built the way the operator builds them."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from stackforge_operator.builders import (
    apps,
    consul,
    ingress,
    kafka,
    kong,
    pdb,
    pooler,
    postgres,
    redis,
)
from stackforge_operator.builders.common import Manifest
from stackforge_operator.models.effective import EffectiveTenant, resolve
from stackforge_operator.models.tenant import StackForgeTenantSpec

# A Growth tenant with three kinds of app: autoscaled with an HTTP health
# check, fixed at two replicas, and a single TCP-probed worker.
BASE: dict[str, Any] = {
    "tier": "Growth",
    "domain": "acme.example.com",
    "components": {
        "postgres": {"database": "acme", "storage": "50Gi", "storageClassName": "fast-ssd"},
        "apps": [
            {
                "name": "api",
                "image": "registry.example.com/acme/api:1.4.2",
                "port": 8080,
                "path": "/api",
                "healthCheckPath": "/healthz",
                "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6},
                "env": {"LOG_LEVEL": "info"},
            },
            {
                "name": "web",
                "image": "registry.example.com/acme/web:2.0.1",
                "port": 3000,
                "path": "/",
                "replicas": 2,
            },
            {
                "name": "worker",
                "image": "registry.example.com/acme/worker:0.9.0",
                "port": 9000,
                "replicas": 1,
            },
        ],
    },
}


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` laid over it: dicts merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def tenant(changes: dict[str, Any] | None = None, *, name: str = "acme") -> EffectiveTenant:
    spec = merge(BASE, changes or {})
    return resolve(name, StackForgeTenantSpec.model_validate(spec), namespace=f"tenant-{name}")


ENTERPRISE: dict[str, Any] = {"tier": "Enterprise"}
STARTER: dict[str, Any] = {"tier": "Starter"}
SUSPENDED: dict[str, Any] = {"suspend": True}
EVERYTHING_OFF: dict[str, Any] = {
    "components": {
        "postgres": {"enabled": False},
        "redis": {"enabled": False},
        "kafka": {"enabled": False},
        "consul": {"enabled": False},
        "apps": [],
    }
}

# Tenants that between them switch every component on, off and to scale.
SCENARIOS: dict[str, dict[str, Any]] = {
    "growth": {},
    "starter": STARTER,
    "enterprise": ENTERPRISE,
    "suspended": merge(ENTERPRISE, SUSPENDED),
    "minimal": EVERYTHING_OFF,
}


def scenarios() -> Iterator[tuple[str, EffectiveTenant]]:
    for label, changes in SCENARIOS.items():
        yield label, tenant(changes)


COMPONENT_BUILDERS = (postgres, pooler, redis, kafka, consul, kong, apps)


def everything(t: EffectiveTenant) -> list[Manifest]:
    """What this task's builders produce for ``t`` (TLS from a named Secret)."""
    out: list[Manifest] = []
    for module in COMPONENT_BUILDERS:
        out += module.build(t)
    out += pdb.build(t)
    out += ingress.build(t, ingress.TLSSource(secret_name="acme-cert"))
    return out


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    matches = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def names(manifests: list[Manifest], kind: str) -> list[str]:
    return sorted(m["metadata"]["name"] for m in manifests if m["kind"] == kind)


def container(workload: Manifest, name: str | None = None) -> dict[str, Any]:
    containers: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    if name is None:
        assert len(containers) == 1
        return containers[0]
    return next(c for c in containers if c["name"] == name)


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Container env by variable name (each name once)."""
    entries: list[dict[str, Any]] = c.get("env", [])
    by_name = {e["name"]: e for e in entries}
    assert len(by_name) == len(entries), "an env var is listed twice"
    return by_name


def secret_ref(entry: dict[str, Any]) -> tuple[str, str]:
    ref = entry["valueFrom"]["secretKeyRef"]
    assert "value" not in entry
    return ref["name"], ref["key"]


def workloads(manifests: list[Manifest]) -> list[Manifest]:
    return [m for m in manifests if m["kind"] in ("Deployment", "StatefulSet")]
