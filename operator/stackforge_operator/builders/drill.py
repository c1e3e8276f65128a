"""A DR drill run's sandbox: namespace, network isolation, RBAC, scratch PostgreSQL, restore Job.

Everything of one run lives in its own namespace, named after the drill and
the run, so a retried reconcile finds (and completes) what it started. The
sandbox is cluster-scoped and cannot be owned by the namespaced DRDrill: the
operator deletes it when the run ends, and sweeps any sandbox whose
``stackforge.io/expires-at`` has passed, whether or not its drill still exists.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stackforge_operator import API_GROUP, image_catalog
from stackforge_operator.builders import archiving, backup_network, network, s3ca
from stackforge_operator.builders.backup import CONNECT_WAIT_SECONDS
from stackforge_operator.builders.common import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    POSTGRES_PORT,
    RUNNER_LABEL,
    Manifest,
    container_security_context,
    env,
    image_pull_secrets,
    mount,
    pod_security_context,
    rfc3339,
    runner_pod,
    secret_env,
    volume_claim_template,
)
from stackforge_operator.builders.postgres import (
    ANSWERS_ON_TCP,
    REPLICATION_USER,
    SUPERUSER,
    SYNCED_MARKER,
    UPKEEP_PROGRAM,
)
from stackforge_operator.builders.postgres_paths import DATA_DIR, PGDATA
from stackforge_operator.drill import await_server
from stackforge_operator.models.backup import ObjectStorage
from stackforge_operator.models.common import SecretKeyRef
from stackforge_operator.models.drill import DRDrillSpec, QueryCheck, Sandbox
from stackforge_operator.models.effective import EffectiveTenant

DRILL_LABEL = f"{API_GROUP}/drill"
DRILL_NAMESPACE_LABEL = f"{API_GROUP}/drill-namespace"
# On the sandbox's Namespace: which drill of that name made it (one deleted and
# made again is another drill; reconcile/drill_orphans.py).
DRILL_UID_LABEL = f"{API_GROUP}/drill-uid"
EXPIRES_ANNOTATION = f"{API_GROUP}/expires-at"
SCRATCH = "scratch-postgres"
# The scratch database's server container: a stop of it ends the run (reconcile/drill.py).
SCRATCH_SERVER_CONTAINER = "postgres"
SCRATCH_SECRET = "scratch-credentials"  # noqa: S105 - a Secret's name
S3_SECRET = "drill-s3-credentials"  # noqa: S105 - a Secret's name
S3_CA_SECRET = "drill-s3-ca"  # noqa: S105 - a Secret's name
CIPHER_SECRET = "drill-repository-cipher"  # noqa: S105 - a Secret's name
CIPHER_KEY = "passphrase"
# The sandbox's own Secrets: a pull secret of the same name is not copied over them.
OWN_SECRETS = frozenset({SCRATCH_SECRET, S3_SECRET, S3_CA_SECRET, CIPHER_SECRET})
S3_KEY_ID_KEY = "AWS_ACCESS_KEY_ID"
S3_SECRET_KEY_KEY = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 - a key's name
RUNNER_ACCOUNT = "drill-runner"
CHECKS_CONFIG = "drill-checks"
CHECKS_MOUNT = "/etc/stackforge/checks"
CHECKS_FILE = "checks.json"
JOB = "drill-restore"
SCRATCH_DATABASE = "restore"
POSTGRES_UID = 999
# What a physical run's runner is started by: it waits for the restored server to
# listen, then becomes stackforge-operator (in the operator image's Python).
AWAIT_SERVER = ["python", "-m", await_server.__name__]
# A physical run's runner stops waiting for its restored database this long
# before the sandbox's TTL (a quarter of a short one), so that it still writes
# its verdict and report ("did not answer") before the Job's deadline kills it.
REPORT_MARGIN_SECONDS = 30
# The restored server's upkeep sidecar asks this often (seconds, for sleep(1))
# whether the server is up and promoted, then changes the passwords: at most
# this much is added to the RTO. While the server's socket is not there yet
# (the restore) each try is a test of a path and a sleep; after it each is a
# psql of a few milliseconds, for the two seconds or so of start-up and replay.
RESTORED_RETRY_SECONDS = "0.2"
RESTORED_STARTING_RETRY_SECONDS = "0.05"
# The restored server's Unix socket, in the abstract namespace (PostgreSQL 14
# and later): it belongs to the pod's network namespace, which every container
# of the pod shares, so the upkeep reaches the server by peer with no volume
# between them (see scratch_volumes for why none).
SCRATCH_SOCKET = "@stackforge"
# Where stackforge-restore writes the S3 endpoint's CA, handed to it as text
# (STACKFORGE_RESTORE_CA_PEM) instead of a Secret volume; in the container's
# writable layer, which is gone with the container.
RESTORE_CA_FILE = "/tmp/stackforge-restore-ca.crt"  # noqa: S108 - the container's own /tmp


@dataclass(frozen=True)
class PhysicalSource:
    """What a Physical drill restores: a pgBackRest repository (an incarnation's
    repo1-path) to a target, an RFC 3339 time or "latest" (stackforge-restore)."""

    repository_path: str
    target: str


def sandbox_name(drill: str, run_id: str, drill_identity: str) -> str:
    """``drill-<drill>-<run>-<digest>``: the digest of ``drill_identity`` (the
    drill's uid) tells apart drills of one name in different namespaces that
    start a run in the same second, which would otherwise share (and fight
    over) one sandbox. The drill's name is shortened, never the rest."""
    digest = hashlib.sha256(drill_identity.encode()).hexdigest()[:6]
    suffix = f"-{run_id.lower()}-{digest}"
    return f"drill-{drill}"[:63 - len(suffix)].rstrip("-") + suffix


def _labels(drill: str, drill_namespace: str) -> dict[str, str]:
    return {DRILL_LABEL: drill, DRILL_NAMESPACE_LABEL: drill_namespace,
            MANAGED_BY_LABEL: MANAGED_BY}


def _meta(name: str, sandbox: str, drill: str, drill_namespace: str) -> dict[str, Any]:
    return {"name": name, "namespace": sandbox, "labels": _labels(drill, drill_namespace)}


def namespace(sandbox: str, drill: str, drill_namespace: str, expires: datetime,
              drill_uid: str | None = None) -> Manifest:
    labels = {
        **_labels(drill, drill_namespace),
        **({DRILL_UID_LABEL: drill_uid} if drill_uid else {}),
        **{f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "audit", "warn")},
    }
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": sandbox, "labels": labels,
                     "annotations": {EXPIRES_ANNOTATION: expires.strftime("%Y-%m-%dT%H:%M:%SZ")}},
    }


def sandbox_flows(sandbox: str, tenant_namespace: str, endpoint: str | None,
                  storage_addresses: Sequence[tuple[str, int]] = ()) -> list[network.Flow]:
    """Nothing comes in; out only to the cluster's DNS, the sandbox itself, and the
    bucket's endpoint on its port (``storage_addresses``: its addresses and ports,
    see reconcile/storage.py; public addresses and pods of namespaces other than
    the tenant's and the sandbox's stand for a host name, as for the backup
    runners; no endpoint, AWS S3: public addresses on 443). A restored copy of
    customer data reached anything else on any port before: the public internet,
    every other namespace, any address on port 53.
    Raises ValueError for an endpoint no policy can hold."""
    everyone = network.EVERY_POD
    why = "the bucket the restore reads; never the tenant's pods"
    if endpoint is None:
        # AWS S3: public addresses (not the runners' 0.0.0.0/0, which on a
        # dataplane matching ipBlocks against pods takes in the tenant's too).
        to_bucket = [network.Flow(everyone, peer, network.tcp(backup_network.DEFAULT_S3_PORT),
                                  why) for peer in network.PUBLIC_INTERNET]
    else:
        to_bucket = backup_network.endpoint_flows(everyone, endpoint, tenant_namespace,
                                                  storage_addresses, why,
                                                  also_excluded=(sandbox,))
    return [
        network.Flow(everyone, everyone, (), "the restore runner and its scratch database"),
        network.dns_flow(),
        *to_bucket,
    ]


def network_policy(sandbox: str, drill: str, drill_namespace: str, tenant_namespace: str,
                   endpoint: str | None,
                   storage_addresses: Sequence[tuple[str, int]] = ()) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta("sandbox-isolation", sandbox, drill, drill_namespace),
        "spec": network.single_policy_spec(
            sandbox_flows(sandbox, tenant_namespace, endpoint, storage_addresses)),
    }


def runner_account(sandbox: str, drill: str, drill_namespace: str) -> Manifest:
    """The restore pod's identity, with no rights and no token: the runner never
    asks the API (it waits for its scratch database on the network, and reports
    through its termination message). It had a Role and RoleBinding, unused, for
    which the operator held the right to make Roles and RoleBindings anywhere."""
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": _meta(RUNNER_ACCOUNT, sandbox, drill, drill_namespace),
            "automountServiceAccountToken": False}


def _secret(name: str, sandbox: str, drill: str, drill_namespace: str,
            data: Mapping[str, str]) -> Manifest:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": _meta(name, sandbox, drill, drill_namespace),
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(data.items())},
    }


def secrets(sandbox: str, drill: str, drill_namespace: str, scratch_password: str,
            s3_keys: Mapping[str, str], s3_ca: str | None = None,
            cipher_passphrase: str | None = None) -> list[Manifest]:
    """The scratch password, and what the policy's Secrets hold, copied into the sandbox.

    A pod can only reference Secrets of its own namespace, hence copies.
    ``s3_ca`` is the PEM bundle of the policy's ``storage.endpointCA``;
    ``cipher_passphrase`` its repository's (a Physical drill's restore reads it).
    """
    out = [_secret(SCRATCH_SECRET, sandbox, drill, drill_namespace,
                   {"password": scratch_password})]
    if s3_keys:
        out.append(_secret(S3_SECRET, sandbox, drill, drill_namespace, s3_keys))
    if s3_ca is not None:
        out.append(_secret(S3_CA_SECRET, sandbox, drill, drill_namespace,
                           {s3ca.CA_FILE_NAME: s3_ca}))
    if cipher_passphrase is not None:
        out.append(_secret(CIPHER_SECRET, sandbox, drill, drill_namespace,
                           {CIPHER_KEY: cipher_passphrase}))
    return out


def pull_secret_copies(sandbox: str, drill: str, drill_namespace: str,
                       found: Mapping[str, Mapping[str, Any]]) -> list[Manifest]:
    """The image catalog's pull secrets, as read from the drill's namespace, for the sandbox.

    Type and data are copied as they are (data stays base64, never decoded);
    nothing else of the original (owners, labels) comes along.
    """
    clashes = sorted(OWN_SECRETS & set(found))
    if clashes:
        raise ValueError(f"pull secret {', '.join(clashes)} would replace the sandbox's own "
                         "Secret of that name")
    return [
        {"apiVersion": "v1", "kind": "Secret",
         "type": str(secret.get("type") or "Opaque"),
         "metadata": _meta(name, sandbox, drill, drill_namespace),
         "data": dict(secret.get("data") or {})}
        for name, secret in sorted(found.items())
    ]


def scratch_volumes(box: Sandbox, t: EffectiveTenant) -> list[dict[str, Any]]:
    """The scratch database's volumes: with ``box.storageClassName`` its data on a volume
    of that class as large as the tenant's database (a generic ephemeral volume:
    the claim is made with the pod and deleted with it); without, none.

    Without a class the data lives in the container's writable layer on the
    node's disk, where an emptyDir would be too, and the pod has no volume at
    all: the kubelet starts the containers of a pod with volumes only once it
    has seen them mounted, in looks 300 ms apart, so a pod without any starts
    about 0.3 s sooner (measured on the real node: 0.15 s from create to the
    container's first instruction, against 0.44 s with the volumes this pod
    had). Every drill's RTO counts that start. What the layer changes: the
    data goes with the container, so a scratch server that restarts restores
    again (a physical drill) or fails the run (a dump's, half restored), and
    it sits wherever the node keeps containers' layers, which on some nodes is
    a smaller disk than the kubelet's: a large database wants a class.
    """
    if box.storage_class_name is None:
        return []
    # An ephemeral claim's template takes no name: the spec alone.
    claim = volume_claim_template("data", t.postgres.storage, box.storage_class_name)
    return [{"name": "data", "ephemeral": {"volumeClaimTemplate": {"spec": claim["spec"]}}}]


def scratch_data_mounts(box: Sandbox) -> dict[str, Any]:
    """The scratch server's mount of its data volume, if it has one (scratch_volumes)."""
    if box.storage_class_name is None:
        return {}
    return {"volumeMounts": [mount("data", DATA_DIR)]}


def scratch_resources(box: Sandbox) -> dict[str, Any]:
    """The scratch server's resources, as ``box.resources`` gives them (none: best effort)."""
    if box.resources is None:
        return {}
    found = box.resources.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {"resources": {kind: amounts for kind, amounts in found.items() if amounts}}


def scratch_database(sandbox: str, drill: str, drill_namespace: str, t: EffectiveTenant,
                     box: Sandbox) -> list[Manifest]:
    """A throw-away PostgreSQL of the tenant's major version; its data dies with the sandbox."""
    container = {
        "name": SCRATCH_SERVER_CONTAINER,
        "image": image_catalog.current().postgres_image(t.postgres.version),
        # A stop ends the run, with its log's tail as the cause.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "env": [
            {"name": "POSTGRES_DB", "value": SCRATCH_DATABASE},
            {"name": "PGDATA", "value": PGDATA},
            {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {
                "name": SCRATCH_SECRET, "key": "password"}}},
        ],
        "ports": [{"name": "postgres", "containerPort": POSTGRES_PORT, "protocol": "TCP"}],
        "readinessProbe": {"exec": {"command": ANSWERS_ON_TCP},
                           "periodSeconds": 5},
        **scratch_resources(box),
        # The data directory and the socket's in the writable layer (the
        # image makes both for its user): see scratch_volumes.
        "securityContext": container_security_context(),
        **scratch_data_mounts(box),
    }
    return _scratch(sandbox, drill, drill_namespace, [container], scratch_volumes(box, t))


def _sandbox_storage(storage: ObjectStorage) -> ObjectStorage:
    """The policy's storage as the sandbox's copies of its Secrets name it (see secrets())."""
    return archiving.storage_with_copies(storage, credentials=S3_SECRET,
                                         key_id_key=S3_KEY_ID_KEY,
                                         secret_key_key=S3_SECRET_KEY_KEY, ca=S3_CA_SECRET)


def restore_environment(t: EffectiveTenant, storage: ObjectStorage,
                        source: PhysicalSource) -> list[dict[str, Any]]:
    """stackforge-restore's settings, with the sandbox's copies of the policy's Secrets.

    Nothing of where the primary archives to: a restored database in a sandbox
    archives nowhere (its server gets no archive_command).
    """
    ca = ([secret_env("STACKFORGE_RESTORE_CA_PEM", S3_CA_SECRET, s3ca.CA_FILE_NAME)]
          if storage.endpoint_ca is not None else [])
    return [env("PGDATA", PGDATA), *archiving.restore_environment(
        _sandbox_storage(storage), SecretKeyRef(name=CIPHER_SECRET, key=CIPHER_KEY),
        stanza_name=t.name, repository_path=source.repository_path, target=source.target,
        ca_file=RESTORE_CA_FILE), *ca]


def restored_database(sandbox: str, drill: str, drill_namespace: str, t: EffectiveTenant, *,
                      box: Sandbox, storage: ObjectStorage, source: PhysicalSource,
                      app_user: str) -> list[Manifest]:
    """The tenant's database restored from its physical backups to ``source.target``.

    The image's entrypoint restores the empty data directory (stackforge-restore)
    and starts the server, which replays WAL to the target and is promoted. The
    restored roles keep the tenant's passwords, which the sandbox must not know:
    the upkeep sidecar, by peer over the server's abstract socket once it takes writes,
    sets the superuser's, the application's and the replication role's to the
    scratch password, then marks the pod Ready. Ready therefore means restored,
    promoted and reachable with the scratch password.

    The runner does not wait for Ready, though: its Service publishes the pod as
    soon as it has an address, so the runner's first successful connection comes
    the moment the password is changed, not a readiness probe period and an
    endpoint update later (about a second of every RTO). The scratch password is
    the gate: only once the server is promoted and the passwords changed can
    anything connect with it.

    No volume but the data's when the sandbox names a storage class (see
    scratch_volumes): the data, pgBackRest's spool and lock and the CA file
    (from an environment variable) in the server's writable layer, the socket
    in the abstract namespace, the upkeep's marker in its own layer.
    """
    image = image_catalog.current().postgres_image(t.postgres.version)
    server = {
        "name": SCRATCH_SERVER_CONTAINER,
        "image": image,
        # A failed restore ends the run, with its log's tail as the cause.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "args": ["postgres", "-c", f"unix_socket_directories={SCRATCH_SOCKET}"],
        "env": restore_environment(t, storage, source),
        "ports": [{"name": "postgres", "containerPort": POSTGRES_PORT, "protocol": "TCP"}],
        # No probe of its own: the upkeep's marker (its probe, below) is written
        # only once this server takes writes with the scratch password, so the
        # pod's readiness already says the server answers. Each exec probe is a
        # runc exec in the container, CPU taken from the restore it would watch.
        **scratch_resources(box),
        "securityContext": container_security_context(),
        **scratch_data_mounts(box),
    }
    upkeep = {
        "name": "upkeep",
        "image": image,
        "command": [UPKEEP_PROGRAM],
        "env": [
            env("POSTGRES_USER", SUPERUSER),
            secret_env("POSTGRES_PASSWORD", SCRATCH_SECRET, "password"),
            env("APP_USER", app_user),
            secret_env("APP_PASSWORD", SCRATCH_SECRET, "password"),
            env("REPLICATION_USER", REPLICATION_USER),
            secret_env("REPLICATION_PASSWORD", SCRATCH_SECRET, "password"),
            env("PGHOST", SCRATCH_SOCKET),
            env("READY_MARKER", SYNCED_MARKER),
            env("RETRY_SECONDS", RESTORED_RETRY_SECONDS),
            env("STARTING_RETRY_SECONDS", RESTORED_STARTING_RETRY_SECONDS),
        ],
        "readinessProbe": {"exec": {"command": ["test", "-e", SYNCED_MARKER]},
                           "periodSeconds": 5},
        # Its marker in its own writable layer.
        "securityContext": container_security_context(),
    }
    return _scratch(sandbox, drill, drill_namespace, [server, upkeep], scratch_volumes(box, t),
                    reached_before_ready=True)


def _scratch(sandbox: str, drill: str, drill_namespace: str,
             containers: list[dict[str, Any]], volumes: list[dict[str, Any]], *,
             reached_before_ready: bool = False) -> list[Manifest]:
    """The scratch database's Service and one-pod StatefulSet."""
    selector = {**_labels(drill, drill_namespace), "app.kubernetes.io/component": SCRATCH}
    service: dict[str, Any] = {"selector": selector, "ports": [
        {"name": "postgres", "port": POSTGRES_PORT, "targetPort": "postgres"}]}
    if reached_before_ready:
        service["publishNotReadyAddresses"] = True
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": _meta(SCRATCH, sandbox, drill, drill_namespace),
         "spec": service},
        {"apiVersion": "apps/v1", "kind": "StatefulSet",
         "metadata": _meta(SCRATCH, sandbox, drill, drill_namespace),
         "spec": {
             "serviceName": SCRATCH, "replicas": 1,
             "selector": {"matchLabels": selector},
             "template": {
                 "metadata": {"labels": selector},
                 "spec": {
                     "automountServiceAccountToken": False,
                     "enableServiceLinks": False,
                     "securityContext": pod_security_context(POSTGRES_UID),
                     **image_pull_secrets(),
                     "containers": containers,
                     **({"volumes": volumes} if volumes else {}),
                 },
             },
         }},
    ]


def checks_document(queries: Sequence[QueryCheck]) -> str:
    """The runner's --checks-file: the drill's queries, as JSON."""
    checks = []
    for q in queries:
        check: dict[str, Any] = {"name": q.name, "sql": q.sql}
        if q.database is not None:
            check["database"] = q.database
        if q.expected_rows is not None:
            check["expectedRows"] = q.expected_rows
        else:
            check["expected"] = q.expected_value
        checks.append(check)
    return json.dumps(checks, sort_keys=True, indent=1)


# The kinds of a sandbox made in its last wave: what makes pods.
LAST_WAVE_KINDS = frozenset({"StatefulSet", "Job", "Pod"})


def sandbox_waves(objects: Sequence[Manifest]) -> list[list[Manifest]]:
    """A new sandbox's objects in the order they may be made, each wave's at once.

    The namespace first; then everything a pod may need or must find in place
    (the isolating NetworkPolicy, the Secrets it mounts, its Service, the
    runner's ServiceAccount and checks); then what makes pods. A pod started
    before its Secrets waits for the kubelet's
    back-off; one started before the NetworkPolicy would not be isolated for
    a moment."""
    first = [o for o in objects if o["kind"] == "Namespace"]
    last = [o for o in objects if o["kind"] in LAST_WAVE_KINDS]
    between = [o for o in objects
               if o["kind"] != "Namespace" and o["kind"] not in LAST_WAVE_KINDS]
    return [wave for wave in (first, between, last) if wave]


def checks_config(sandbox: str, drill: str, drill_namespace: str, spec: DRDrillSpec) -> Manifest:
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": _meta(CHECKS_CONFIG, sandbox, drill, drill_namespace),
        "data": {CHECKS_FILE: checks_document(spec.checks.queries)},
    }


def restored_wait_seconds(ttl_seconds: int) -> int:
    """How long a physical run's runner waits for the restored database: the
    sandbox's TTL but the margin its report needs (REPORT_MARGIN_SECONDS)."""
    return ttl_seconds - min(REPORT_MARGIN_SECONDS, ttl_seconds // 4)


def restore_job(
    sandbox: str, drill: str, drill_namespace: str, spec: DRDrillSpec, t: EffectiveTenant,
    *, storage: Mapping[str, Any], backup_id: str, started_at: datetime,
    rto_seconds: int, rpo_seconds: int, with_s3_keys: bool, with_s3_ca: bool = False,
    physical: PhysicalSource | None = None,
) -> Manifest:
    """The restore runner; ``with_s3_ca``: verify S3 with the sandbox's copy of endpointCA.

    ``physical``: the scratch database is the restored one already (restored_database);
    the runner verifies it, in the tenant's own database, and grades it.
    """
    if physical is None:
        # The scratch pod is Ready when the Job starts, but the runner's new pod
        # can be refused a moment longer (the node's Service rules, the
        # NetworkPolicy enforcer): it asks again as long as a backup's runner does.
        chosen = ["--backup", backup_id, "--wait-seconds", str(CONNECT_WAIT_SECONDS)]
        database = SCRATCH_DATABASE
        launcher: list[str] | None = None
    else:
        # The Job starts with the restore (reconcile/drill.py): almost as long as
        # the sandbox lives, the database may still be coming. The runner counts
        # it from the run's start.
        wait = str(restored_wait_seconds(spec.sandbox.ttl_seconds))
        chosen = ["--recovery-target", physical.target,
                  "--repository", physical.repository_path, "--wait-seconds", wait]
        database = t.postgres.database
        # The runner starts its Python only once the restored server listens
        # (drill/await_server.py): not in the middle of the restore.
        launcher = [*AWAIT_SERVER, wait]
    args = ["drill", "run", "--tenant", t.name, "--bucket", storage["bucket"],
            "--prefix", storage.get("prefix", "stackforge"), *chosen,
            # The report's name: the sandbox's, unique to this drill (by its
            # uid) and run. The run id alone is a second: two drills of one
            # tenant started together wrote one report over the other.
            "--run-id", sandbox,
            # With its fraction: the RTO is measured from it (in whole
            # seconds it was overstated by up to one).
            "--started-at", rfc3339(started_at),
            "--rto-seconds", str(rto_seconds), "--rpo-seconds", str(rpo_seconds),
            "--checks-file", f"{CHECKS_MOUNT}/{CHECKS_FILE}",
            "--termination-log", "/dev/termination-log"]
    if storage.get("endpoint"):
        args += ["--endpoint", storage["endpoint"]]
    if storage.get("region"):
        args += ["--region", storage["region"]]
    if storage.get("forcePathStyle"):
        args.append("--force-path-style")
    if not spec.checks.row_counts and physical is None:
        args.append("--no-row-counts")
    if not spec.checks.checksum and physical is None:
        args.append("--no-checksum")
    variables: list[dict[str, Any]] = [
        {"name": "PGHOST", "value": f"{SCRATCH}.{sandbox}.svc"},
        {"name": "PGPORT", "value": str(POSTGRES_PORT)},
        {"name": "PGUSER", "value": SUPERUSER},
        {"name": "PGDATABASE", "value": database},
        secret_env("PGPASSWORD", SCRATCH_SECRET, "password"),
    ]
    if with_s3_keys:
        variables += [secret_env("AWS_ACCESS_KEY_ID", S3_SECRET, S3_KEY_ID_KEY),
                      secret_env("AWS_SECRET_ACCESS_KEY", S3_SECRET, S3_SECRET_KEY_KEY)]
    mounts: list[dict[str, Any]] = [
        {"name": "checks", "mountPath": CHECKS_MOUNT, "readOnly": True},
        # A private emptyDir, not the node's /tmp.
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
    ]
    volumes = [{"name": "checks", "configMap": {"name": CHECKS_CONFIG}},
               {"name": "tmp", "emptyDir": {}}]
    if with_s3_ca:
        variables.append(s3ca.env())
        mounts.append(s3ca.mount())
        volumes.append(s3ca.volume(S3_CA_SECRET, s3ca.CA_FILE_NAME))
    labels = {**_labels(drill, drill_namespace), RUNNER_LABEL: "drill"}
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": _meta(JOB, sandbox, drill, drill_namespace),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": spec.sandbox.ttl_seconds,
            "template": {
                "metadata": {"labels": labels},
                "spec": runner_pod("drill", args, variables, mounts, volumes,
                                   service_account=RUNNER_ACCOUNT, launcher=launcher),
            },
        },
    }
