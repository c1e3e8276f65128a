"""The backup runner's egress: a NetworkPolicy each BackupPolicy owns.

The tenant namespace denies all traffic by default (builders/network.py) and
opens DNS and the operator to every pod; the runner pods of a policy need
more: the tenant's PostgreSQL, the bucket's endpoint and, when dashboards
are saved, Grafana. The PostgreSQL side admits them already (its ingress
rule names ``stackforge.io/runner=backup``); this is the egress half. It
belongs to the policy, not the tenant, because only the policy knows the
endpoint and Grafana, and it goes with the policy.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from stackforge_operator.builders import network
from stackforge_operator.builders.backup import POLICY_LABEL, child_metadata
from stackforge_operator.builders.common import POSTGRES_PORT, RUNNER_LABEL, Manifest
from stackforge_operator.models.backup import BackupPolicySpec, BackupTarget
from stackforge_operator.models.effective import EffectiveTenant

# AWS S3 when the policy names no endpoint: HTTPS.
DEFAULT_S3_PORT = 443
_SCHEME_PORTS = {"https": 443, "http": 80}


def runner_egress_name(policy: str) -> str:
    return f"{policy}-runner-egress"


def runner_selector(policy: str) -> dict[str, Any]:
    """This policy's runner pods (job_template's labels), not another policy's."""
    return {"matchLabels": {RUNNER_LABEL: "backup", POLICY_LABEL: policy}}


def url_host_port(url: str) -> tuple[str, int]:
    """Host and port of an http(s) URL, the port defaulting to the scheme's."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"{url!r}: the port must be 1-65535")
    if port is None:
        port = _SCHEME_PORTS.get(parts.scheme.lower())
        if port is None:
            raise ValueError(f"{url!r}: want an http or https URL")
    return parts.hostname, port


def _anywhere() -> list[dict[str, Any]]:
    return [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"namespaceSelector": {}}]


def destination(host: str) -> list[dict[str, Any]]:
    """The peers that reach ``host``: exactly it when it is an IP, else anywhere.

    A host name's addresses are unknown to a NetworkPolicy (and change), so
    any address is allowed, on the one port only. ``ipBlock`` alone is not
    enough: several enforcers (Cilium, for one) never match a cluster pod's IP
    with it, so an in-cluster server (MinIO, Grafana) also needs the pod peer
    ``namespaceSelector: {}``.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return _anywhere()
    return [{"ipBlock": {"cidr": f"{address}/{address.max_prefixlen}"}}]


def _tcp(port: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port}]


def egress_rules(policy_spec: BackupPolicySpec, t: EffectiveTenant) -> list[dict[str, Any]]:
    """Where a runner connects: PostgreSQL, S3, Grafana (each only when a target needs it).

    Raises ValueError, naming the field, for a URL whose port no policy can hold.
    """
    rules: list[dict[str, Any]] = []
    if BackupTarget.POSTGRES in policy_spec.targets:
        postgres = network.component(t, "postgres")
        rules.append({"to": [{"podSelector": postgres.selector()}],
                      "ports": _tcp(POSTGRES_PORT)})
    endpoint = policy_spec.storage.endpoint
    if endpoint is None:
        rules.append({"to": _anywhere(), "ports": _tcp(DEFAULT_S3_PORT)})
    else:
        rules.append(_to_url("spec.storage.endpoint", endpoint))
    grafana = policy_spec.grafana
    if BackupTarget.GRAFANA_DASHBOARDS in policy_spec.targets and grafana is not None:
        rules.append(_to_url("spec.grafana.url", grafana.url))
    return rules


def _to_url(field: str, url: str) -> dict[str, Any]:
    try:
        host, port = url_host_port(url)
    except ValueError as error:
        raise ValueError(f"{field}: {error}") from None
    return {"to": destination(host), "ports": _tcp(port)}


def runner_egress(
    policy: str, namespace: str, policy_spec: BackupPolicySpec, t: EffectiveTenant
) -> Manifest:
    """The runner pods' egress; none at all while the tenant is isolated.

    ``isolate`` (a security incident) cuts the tenant off but for the
    operator's own traffic: a backup must not carry data out meanwhile, so
    the policy stays (selecting the runners) with no egress rule.
    """
    rules = [] if t.isolate else egress_rules(policy_spec, t)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_metadata(runner_egress_name(policy), namespace, policy, t.name),
        "spec": {
            "podSelector": runner_selector(policy),
            "policyTypes": ["Egress"],
            "egress": rules,
        },
    }
