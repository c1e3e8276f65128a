"""The tenant's namespace, its ResourceQuota and its LimitRange."""

from __future__ import annotations

from stackforge_operator.builders.common import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    PART_OF,
    PART_OF_LABEL,
    TENANT_LABEL,
    Manifest,
    metadata,
)
from stackforge_operator.models.effective import EffectiveTenant

# Pod Security Standards: the tenant's workloads must pass `restricted`.
POD_SECURITY_LEVEL = "restricted"
# Defaults for containers that set no resources (the quota needs requests).
DEFAULT_REQUEST = {"cpu": "100m", "memory": "128Mi"}
DEFAULT_LIMIT = {"cpu": "500m", "memory": "512Mi"}


def build_namespace(t: EffectiveTenant) -> Manifest:
    pod_security = {
        f"pod-security.kubernetes.io/{mode}": POD_SECURITY_LEVEL
        for mode in ("enforce", "audit", "warn")
    }
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": t.namespace,
            "labels": {
                TENANT_LABEL: t.name,
                MANAGED_BY_LABEL: MANAGED_BY,
                PART_OF_LABEL: PART_OF,
                **pod_security,
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }


QUOTA_NAME = "tenant-quota"


def build_quota(t: EffectiveTenant) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": metadata(t, QUOTA_NAME, "quota"),
        "spec": {
            "hard": {
                "requests.cpu": t.quota.cpu,
                "requests.memory": t.quota.memory,
                "requests.storage": t.quota.storage,
                "pods": str(t.quota.pods),
            }
        },
    }


def build_limit_range(t: EffectiveTenant) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": metadata(t, "tenant-defaults", "quota"),
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "defaultRequest": dict(DEFAULT_REQUEST),
                    "default": dict(DEFAULT_LIMIT),
                }
            ]
        },
    }


def build(t: EffectiveTenant) -> list[Manifest]:
    return [build_namespace(t), build_quota(t), build_limit_range(t)]
