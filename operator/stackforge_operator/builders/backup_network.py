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

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from stackforge_operator.builders import network
from stackforge_operator.builders.backup import POLICY_LABEL, child_metadata
from stackforge_operator.builders.common import (
    COMPONENT_LABEL,
    POSTGRES_PORT,
    RUNNER_LABEL,
    TENANT_LABEL,
    Manifest,
    metadata,
)
from stackforge_operator.models.backup import BackupPolicySpec, BackupTarget, ObjectStorage
from stackforge_operator.models.effective import EffectiveTenant

# AWS S3 when the policy names no endpoint: HTTPS.
DEFAULT_S3_PORT = 443
_SCHEME_PORTS = {"https": 443, "http": 80}


def runner_egress_name(policy: str) -> str:
    return f"{policy}-runner-egress"


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


def runner_peer(policy: str) -> network.Peer:
    """This policy's runner pods (job_template's labels), not another policy's."""
    return network.Peer(f"backup-runner-{policy}",
                        pod_labels=((RUNNER_LABEL, "backup"), (POLICY_LABEL, policy)))


# AWS S3 named by no endpoint: any IPv4 address (a VPC endpoint of S3 may
# answer at a private one).
AWS_S3 = network.Peer("aws-s3", outside=(("ipBlock", {"cidr": "0.0.0.0/0"}),))


def url_destinations(url: str, tenant_namespace: str,
                     resolved: Sequence[str] = (), *,
                     also_excluded: Sequence[str] = ()) -> list[network.Peer]:
    """Where a URL's host is: exactly it when it is an IP; for a host name (whose
    addresses a NetworkPolicy cannot name, and which change) the addresses it
    resolved to now, public addresses, and pods of namespaces other than the
    tenant's (an in-cluster server: some enforcers never match a pod's IP with an
    ipBlock, and kube-router matches pods with one, hence no "0.0.0.0/0")."""
    host, _ = url_host_port(url)
    try:
        return [network.address(host)]
    except ValueError:
        pass
    # Public addresses are covered already; naming them would rewrite the
    # policy whenever round-robin DNS answers another set.
    private = sorted({ip for ip in resolved if not network.is_public(ip)})
    return [*(network.address(ip) for ip in private), *network.PUBLIC_INTERNET,
            network.other_namespaces(tenant_namespace, *also_excluded)]


def runner_flows(policy: str, policy_spec: BackupPolicySpec, t: EffectiveTenant,
                 storage_addresses: Sequence[tuple[str, int]] = ()) -> list[network.Flow]:
    """Where a runner connects: PostgreSQL, S3, Grafana (each only when a target needs it).

    ``storage_addresses``: the addresses and ports the endpoint's host name leads
    to now (reconcile/storage.py: what it resolves to and, for a Service, its
    endpoints). Raises ValueError, naming the field, for a URL
    whose port no policy can hold.
    """
    runner = runner_peer(policy)
    flows: list[network.Flow] = []
    if BackupTarget.POSTGRES in policy_spec.targets:
        flows.append(network.Flow(runner, network.component(t, "postgres"),
                                  network.tcp(POSTGRES_PORT), "the runner dumps the database"))
    endpoint = policy_spec.storage.endpoint
    if endpoint is None:
        flows.append(network.Flow(runner, AWS_S3, network.tcp(DEFAULT_S3_PORT),
                                  "the runner uploads to AWS S3"))
    else:
        flows += _to_url("spec.storage.endpoint", endpoint, runner, t.namespace, storage_addresses,
                         "the runner uploads to the S3 endpoint")
    grafana = policy_spec.grafana
    if BackupTarget.GRAFANA_DASHBOARDS in policy_spec.targets and grafana is not None:
        flows += _to_url("spec.grafana.url", grafana.url, runner, t.namespace, (),
                         "the runner exports Grafana's dashboards")
    return flows


def _to_url(field: str, url: str, runner: network.Peer, tenant_namespace: str,
            resolved: Sequence[tuple[str, int]], why: str,
            also_excluded: Sequence[str] = ()) -> list[network.Flow]:
    try:
        _, port = url_host_port(url)
    except ValueError as error:
        raise ValueError(f"{field}: {error}") from None
    flows = [network.Flow(runner, peer, network.tcp(port), why) for peer in url_destinations(
        url, tenant_namespace, [ip for ip, at in resolved if at == port],
        also_excluded=also_excluded)]
    # A Service's endpoints serve on ports of their own (its targetPort); the
    # policies are matched after the translation.
    flows += [network.Flow(runner, network.address(ip), network.tcp(at), why)
              for ip, at in sorted(set(resolved)) if at != port and not network.is_public(ip)]
    return flows


def endpoint_flows(peer: network.Peer, endpoint: str, tenant_namespace: str,
                   resolved: Sequence[tuple[str, int]], why: str, *,
                   also_excluded: Sequence[str] = ()) -> list[network.Flow]:
    """Where ``peer`` reaches a bucket's endpoint: its host on its port
    (url_destinations, pods of namespaces other than the tenant's and
    ``also_excluded``), and a Service's endpoints on their own ports. Raises
    ValueError naming the endpoint."""
    return _to_url("spec.storage.endpoint", endpoint, peer, tenant_namespace, resolved, why,
                   also_excluded)


def archive_egress_name(policy: str) -> str:
    return f"{policy}-archive-egress"


def archive_flows(policy_spec: BackupPolicySpec, t: EffectiveTenant,
                  storage_addresses: Sequence[tuple[str, int]] = ()) -> list[network.Flow]:
    """Where the primary's archive_command connects: the bucket's endpoint (always
    https: a CEL rule of the policy). Raises ValueError as runner_flows does."""
    primary = network.component(t, "postgres")
    endpoint = policy_spec.storage.endpoint
    if endpoint is None:
        return [network.Flow(primary, AWS_S3, network.tcp(DEFAULT_S3_PORT),
                             "the primary archives WAL to AWS S3")]
    return _to_url("spec.storage.endpoint", endpoint, primary, t.namespace, storage_addresses,
                   "the primary archives WAL to the S3 endpoint")


def archive_egress(
    policy: str, namespace: str, policy_spec: BackupPolicySpec, t: EffectiveTenant,
    storage_addresses: Sequence[tuple[str, int]] = (),
) -> Manifest:
    """The primary's egress to the archive, owned by the policy that archives (none
    while the tenant is isolated: no data leaves it then, as for the runners)."""
    flows = [] if t.isolate else archive_flows(policy_spec, t, storage_addresses)
    return _egress_policy(
        child_metadata(archive_egress_name(policy), namespace, policy, t.name),
        network.component(t, "postgres"), flows)


RESTORE_EGRESS = "restore-egress"


def restore_flows(storage: ObjectStorage, t: EffectiveTenant,
                  storage_addresses: Sequence[tuple[str, int]] = ()) -> list[network.Flow]:
    """Where a restoring primary reads the archive (its restore_command and
    ``pgbackrest restore``): the restored repository's endpoint."""
    primary = network.component(t, "postgres")
    if storage.endpoint is None:
        return [network.Flow(primary, AWS_S3, network.tcp(DEFAULT_S3_PORT),
                             "the primary restores from AWS S3")]
    return _to_url("the restore's storage.endpoint", storage.endpoint, primary, t.namespace,
                   storage_addresses, "the primary restores from the S3 endpoint")


def restore_egress(t: EffectiveTenant, storage: ObjectStorage,
                   storage_addresses: Sequence[tuple[str, int]] = ()) -> Manifest:
    """The restoring primary's egress to the archive it restores, the tenant's while
    the restore lasts (spec.bootstrap, an in-place recovery): the archive may be
    another tenant's, with no policy here opening its endpoint. None while the
    tenant is isolated, as for the runners. Raises ValueError as runner_flows does."""
    flows = [] if t.isolate else restore_flows(storage, t, storage_addresses)
    return _egress_policy(metadata(t, RESTORE_EGRESS, "network"),
                          network.component(t, "postgres"), flows)


def _egress_policy(meta: dict[str, Any], pods: network.Peer,
                   flows: Sequence[network.Flow]) -> Manifest:
    """A NetworkPolicy opening only ``flows``' egress for ``pods`` (none: all closed)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta,
        "spec": {
            "podSelector": pods.selector(),
            "policyTypes": ["Egress"],
            "egress": [network.egress_rule(flow) for flow in flows],
        },
    }


DUMP_EGRESS = "bootstrap-dump-egress"


def dump_runner(t: EffectiveTenant) -> network.Peer:
    """The pods of the Job restoring a dump into a new tenant (builders/bootstrap.py)."""
    return network.Peer("bootstrap-dump-runner", pod_labels=(
        (COMPONENT_LABEL, "bootstrap"), (TENANT_LABEL, t.name), (RUNNER_LABEL, "backup")))


def dump_restore_flows(storage: ObjectStorage, t: EffectiveTenant,
                       storage_addresses: Sequence[tuple[str, int]] = ()) -> list[network.Flow]:
    """Where the runner restoring a dump into a new tenant connects: the dump's
    endpoint, and the tenant's PostgreSQL (which admits backup runners)."""
    runner = dump_runner(t)
    flows = [network.Flow(runner, network.component(t, "postgres"), network.tcp(POSTGRES_PORT),
                          "the runner restores the dump into the primary")]
    if storage.endpoint is None:
        return [*flows, network.Flow(runner, AWS_S3, network.tcp(DEFAULT_S3_PORT),
                                     "the runner reads the dump from AWS S3")]
    return flows + _to_url("the dump's storage.endpoint", storage.endpoint, runner, t.namespace,
                           storage_addresses, "the runner reads the dump from the S3 endpoint")


def dump_restore_egress(t: EffectiveTenant, storage: ObjectStorage,
                        storage_addresses: Sequence[tuple[str, int]] = ()) -> Manifest:
    """The dump runner's egress, the tenant's while the restore lasts (spec.bootstrap.
    logical): the bucket is another tenant's, with no policy here opening its
    endpoint. None while the tenant is isolated. Raises ValueError as runner_flows does."""
    flows = [] if t.isolate else dump_restore_flows(storage, t, storage_addresses)
    return _egress_policy(metadata(t, DUMP_EGRESS, "network"), dump_runner(t), flows)


def runner_egress(
    policy: str, namespace: str, policy_spec: BackupPolicySpec, t: EffectiveTenant,
    storage_addresses: Sequence[tuple[str, int]] = (),
) -> Manifest:
    """The runner pods' egress; none at all while the tenant is isolated.

    ``isolate`` (a security incident) cuts the tenant off but for the
    operator's own traffic: a backup must not carry data out meanwhile, so
    the policy stays (selecting the runners) with no egress rule.
    """
    flows = [] if t.isolate else runner_flows(policy, policy_spec, t, storage_addresses)
    return _egress_policy(
        child_metadata(runner_egress_name(policy), namespace, policy, t.name),
        runner_peer(policy), flows)
