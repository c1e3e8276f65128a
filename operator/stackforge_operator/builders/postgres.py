"""PostgreSQL: a primary StatefulSet, optional streaming read replicas, their Services.

What runs inside these pods is the project's PostgreSQL image (images/postgres/):
its entrypoint initialises an empty volume and runs the image's
``10-stackforge-roles.sh``, which makes the application and replication roles
with passwords read from the environment, so no credential ever sits in a
manifest; ``stackforge-primary-upkeep``, a sidecar of the primary, sets the
roles' passwords from the Secret again at every start (a credentials rotation
restarts the pods, and the database must then accept the new passwords, not
only the clients hold them) and keeps one replication slot per read replica;
``stackforge-clone-replica`` clones a read replica, which is Ready only while
it streams (``stackforge-replica-ready``). This module only wires them up:
their environment, volumes and probes.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from stackforge_operator import API_GROUP, image_catalog
from stackforge_operator.builders import archiving, exporters
from stackforge_operator.builders.common import (
    POSTGRES_PORT,
    Manifest,
    config_hash,
    config_map,
    config_map_volume,
    container_port,
    container_security_context,
    empty_dir,
    env,
    field_env,
    labels,
    metadata,
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
from stackforge_operator.builders.postgres_paths import DATA_DIR, PGDATA, RUN_DIR
from stackforge_operator.builders.secrets_names import (
    POSTGRES_ADMIN_ROLES_KEY,
    POSTGRES_ADMIN_ROLES_SECRET,
    POSTGRES_PASSWORD_KEY,
    POSTGRES_REPLICATION_PASSWORD_KEY,
    POSTGRES_SECRET,
    POSTGRES_SUPERUSER_PASSWORD_KEY,
    POSTGRES_USER_KEY,
)
from stackforge_operator.models.common import parse_quantity
from stackforge_operator.models.effective import EffectiveTenant

COMPONENT = "postgres"
REPLICA_COMPONENT = "postgres-replica"
NAME = "postgres"
HEADLESS = "postgres-headless"
REPLICA_NAME = "postgres-replica"
READ_SERVICE = "postgres-read"
INIT_CONFIG = "postgres-init"

# uid/gid of the "postgres" user in the official Debian-based image.
POSTGRES_UID = 999
SUPERUSER = "postgres"
REPLICATION_USER = "replicator"

CONFIG_DIR = "/etc/postgresql/stackforge"
HBA_FILE = f"{CONFIG_DIR}/pg_hba.conf"
# Programs of the image (images/postgres/), on its PATH.
UPKEEP_PROGRAM = "stackforge-primary-upkeep"
CLONE_PROGRAM = "stackforge-clone-replica"
REPLICA_READY_PROGRAM = "stackforge-replica-ready"
REPLICA_FOLLOWS_PROGRAM = "stackforge-replica-follows"
# The image's entrypoint: the replica's start runs it once its data is ready.
ENTRYPOINT = "docker-entrypoint.sh"
# What the replica's liveness probe writes to its termination message when it
# proves the replica can never follow the primary again (a re-clone follows).
RECLONE_MESSAGE_PREFIX = "re-clone: "
# Replica N streams through slot postgres_replica_N; the upkeep sidecar creates
# the slots listed in the ConfigMap and drops other slots of this prefix.
SLOT_PREFIX = "postgres_replica_"
SLOTS_KEY = "replica-slots"
EXPORTER_QUERIES_KEY = "exporter-queries.yaml"
# While the tenant is isolated, a moment (whole seconds since the epoch): the
# upkeep sidecar closes the sessions that came over the network and began
# before it, which the NetworkPolicies alone leave open (reconcile/isolation.py
# says why not every one). Empty when the tenant is not isolated. (The key keeps
# its name from when it held "true": the sidecar's environment names the file,
# and a new name would change every primary's pod template, restarting them all
# on the operator's upgrade.)
ISOLATION_KEY = "isolated"
# On the primary's pod: the versions of the ConfigMap and Secret whose files its
# sidecar reads while it runs (isolation, slots, slot WAL limit, admin accounts),
# written when one changes. A pod update has the kubelet sync the pod, which
# writes its ConfigMap and Secret files anew at once; otherwise they follow up
# to a minute late (the kubelet's periodic sync), and an admin account removed
# could still log in, or an isolation still close sessions after its lift.
LIVE_FILES_ANNOTATION = f"{API_GROUP}/live-files"
# How much WAL the slots may hold back on the primary's volume, as a share of it:
# a replica that stays away loses its slot (and must be cloned again) before the
# primary's disk fills. Applied by the upkeep sidecar (ALTER SYSTEM, a reload):
# resizing the volume never restarts the primary.
SLOT_WAL_LIMIT_KEY = "max-slot-wal-keep-size"
# The primary's archive_timeout in seconds (empty without archiving), set by the
# upkeep sidecar too (ALTER SYSTEM, a reload): a policy's new timeout never
# restarts the primary (as a -c argument it rolled the pod).
ARCHIVE_TIMEOUT_KEY = "archive-timeout"
SLOT_WAL_SHARE = Decimal("0.2")
# The admin accounts (role and password each), where the upkeep sidecar reads them.
ADMIN_ROLES_DIR = "/etc/postgresql/stackforge-admins"
# Set by the StatefulSet controller on each pod: its ordinal.
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
# Where the upkeep sidecar says the passwords are set (its READY_MARKER; in the
# pod's own emptyDir).
SYNCED_MARKER = "/tmp/role-passwords-synced"  # noqa: S108

# pg_hba cannot name a namespace: addresses are open here and the tenant's
# NetworkPolicy limits who reaches port 5432 to pods of the namespace. Network
# lines need a SCRAM password; replication only for the replication role. The
# superuser may log in by peer (OS user postgres) on the Unix socket, which
# lives in the pod's private emptyDir: that is how the password sync below logs
# in after a rotation, when the stored superuser password is the old one.
PG_HBA = """\
# TYPE  DATABASE     USER        ADDRESS  METHOD
local   all          postgres             peer
local   all          all                  scram-sha-256
host    all          all         all      scram-sha-256
host    replication  replicator  all      scram-sha-256
"""

# A server is ready when it answers on its own address, not on its socket:
# the image's first start runs initdb.d under a socket-only server that is
# stopped again afterwards, and a socket probe would call that one Ready.
ANSWERS_ON_TCP = ["pg_isready", "--host=127.0.0.1", f"--port={POSTGRES_PORT}"]
SIDECAR_RESOURCES = {
    "requests": {"cpu": "10m", "memory": "16Mi"},
    "limits": {"cpu": "100m", "memory": "64Mi"},
}

# Streaming settings do not depend on the replica count, so adding or
# removing read replicas never changes (and never restarts) the primary.
SERVER_ARGS = [
    "postgres",
    "-c", f"hba_file={HBA_FILE}",
    "-c", "password_encryption=scram-sha-256",
    "-c", "wal_level=replica",
    "-c", "max_wal_senders=10",
    "-c", "hot_standby=on",
]  # fmt: skip

def primary_pod(ordinal: int) -> str:
    """The primary's pod name: its StatefulSet's pods start at ``ordinal``."""
    return f"{NAME}-{ordinal}"


def superuser_connection(t: EffectiveTenant, ordinal: int) -> list[dict[str, Any]]:
    """libpq's environment for a runner logging in as the superuser to the primary's
    pod ``ordinal`` itself, by its own DNS name (never a replica, never the Service)."""
    return [
        {"name": "PGHOST", "value": f"{primary_pod(ordinal)}.{HEADLESS}.{t.namespace}.svc"},
        {"name": "PGPORT", "value": str(POSTGRES_PORT)},
        {"name": "PGUSER", "value": SUPERUSER},
        {"name": "PGDATABASE", "value": t.postgres.database},
        secret_env("PGPASSWORD", POSTGRES_SECRET, POSTGRES_SUPERUSER_PASSWORD_KEY),
    ]


def data_claim(statefulset: str, ordinal: int) -> str:
    """The data volume's claim of pod ``ordinal`` (the StatefulSet controller's name)."""
    return f"data-{statefulset}-{ordinal}"


def primary_claim_ordinal(claim: str) -> int | None:
    """The pod number of a primary's data claim (``data_claim(NAME, n)``); None for
    any other claim (a read replica's: data-postgres-replica-<n>)."""
    matched = re.fullmatch(rf"data-{NAME}-(\d+)", claim)
    return int(matched[1]) if matched else None


def image(t: EffectiveTenant) -> str:
    return image_catalog.current().postgres_image(t.postgres.version)


def build(t: EffectiveTenant) -> list[Manifest]:
    if not t.postgres.enabled:
        return []
    out = [
        _init_config(t),
        service(
            t,
            HEADLESS,
            COMPONENT,
            selector=selector_labels(t, COMPONENT),
            ports=[service_port("postgres", POSTGRES_PORT)],
            headless=True,
        ),
        service(
            t,
            NAME,
            COMPONENT,
            selector=selector_labels(t, COMPONENT),
            ports=[service_port("postgres", POSTGRES_PORT)],
        ),
        _primary(t),
    ]
    if t.postgres.read_replicas > 0:
        out += [
            service(
                t,
                READ_SERVICE,
                REPLICA_COMPONENT,
                selector=selector_labels(t, REPLICA_COMPONENT),
                ports=[service_port("postgres", POSTGRES_PORT)],
            ),
            _replicas(t),
        ]
    return out


def _init_config(t: EffectiveTenant) -> Manifest:
    return config_map(
        t,
        INIT_CONFIG,
        COMPONENT,
        # The slot list is read while the primary runs (the kubelet refreshes
        # the file): scaling the replicas never restarts the primary.
        {"pg_hba.conf": PG_HBA, SLOTS_KEY: replica_slots(t),
         SLOT_WAL_LIMIT_KEY: slot_wal_limit(t),
         ARCHIVE_TIMEOUT_KEY: archive_timeout(t),
         EXPORTER_QUERIES_KEY: exporters.POSTGRES_EXPORTER_QUERIES,
         ISOLATION_KEY: isolation_value(t) or ""},
    )


def archive_timeout(t: EffectiveTenant) -> str:
    """ARCHIVE_TIMEOUT_KEY's value: the archiving policy's timeout in seconds, or
    empty (the upkeep then resets the setting) while nothing is archived."""
    return str(t.archiving.archive_timeout_seconds) if t.archiving is not None else ""


def live_files_version(config: Mapping[str, Any] | None,
                       admin_roles: Mapping[str, Any] | None) -> str | None:
    """LIVE_FILES_ANNOTATION's value for the live ConfigMap and admin accounts'
    Secret (resource versions, never contents: the Secret holds passwords);
    None while one of them does not exist yet."""
    if config is None or admin_roles is None:
        return None
    return (f"{INIT_CONFIG}={config['metadata']['resourceVersion']} "
            f"{POSTGRES_ADMIN_ROLES_SECRET}={admin_roles['metadata']['resourceVersion']}")


def isolation_value(t: EffectiveTenant) -> str | None:
    """What the upkeep sidecar reads as the isolation: the moment before which
    network sessions are closed; "all" for an isolation the reconcile has not
    timed (every network session is closed then); None when not isolated."""
    if not t.isolate:
        return None
    if t.isolation is None:
        return "all"
    return str(int(t.isolation.sessions_before.timestamp()))


def admin_roles_secret(t: EffectiveTenant, passwords: Mapping[str, str]) -> Manifest:
    """Every admin account the database should have, with its role and password
    (``passwords``: username -> password; an account without one is left out
    until its password Secret exists). The primary's upkeep sidecar reads this
    from a Secret volume, which the kubelet refreshes: adding or removing an
    account never restarts the primary."""
    accounts = [
        {"name": a.username, "role": a.role.value, "password": passwords[a.username]}
        for a in sorted(t.admin_accounts, key=lambda a: a.username)
        if a.username in passwords
    ]
    document = json.dumps(accounts, separators=(",", ":"))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(t, POSTGRES_ADMIN_ROLES_SECRET, COMPONENT),
        "type": "Opaque",
        "data": {POSTGRES_ADMIN_ROLES_KEY: base64.b64encode(document.encode()).decode("ascii")},
    }


def slot_wal_limit(t: EffectiveTenant) -> str:
    """max_slot_wal_keep_size for the primary, in megabytes (its unit): a fifth of
    its volume, at least 64."""
    megabytes = int(parse_quantity(t.postgres.storage) * SLOT_WAL_SHARE / (1024 * 1024))
    return str(max(megabytes, 64))


def replica_slots(t: EffectiveTenant) -> str:
    """The slot names of the tenant's read replicas, one a line (kept while suspended:
    the replicas' volumes are, and they resume from their slots)."""
    return "".join(f"{SLOT_PREFIX}{i}\n" for i in range(t.postgres.read_replicas))


def _postgres_container(
    t: EffectiveTenant,
    name: str,
    args: list[str],
    extra_env: list[dict[str, Any]],
    extra_mounts: list[dict[str, Any]],
    ready: list[str],
) -> dict[str, Any]:
    readiness = {"exec": {"command": ready}, "periodSeconds": 10, "timeoutSeconds": 5,
                 "failureThreshold": 3}
    return {
        "name": name,
        "image": image(t),
        "args": args,
        "env": [env("PGDATA", PGDATA), *extra_env],
        "ports": [container_port("postgres", POSTGRES_PORT)],
        "readinessProbe": readiness,
        # No liveness probe: killing a server in crash recovery restarts the
        # recovery from scratch and never lets it finish.
        "resources": resources(t.postgres.resources),
        # A server that stops on its own says why in its last log lines (a full
        # volume's "No space left on device"): the pod's status keeps them for
        # the operator, which reads no logs (pod_health.py).
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": container_security_context(read_only_root_filesystem=True),
        "volumeMounts": sorted(
            [
                mount("data", DATA_DIR),
                mount("config", CONFIG_DIR, read_only=True),
                mount("run", RUN_DIR),
                mount("tmp", "/tmp"),  # noqa: S108 - a private emptyDir, not the host's /tmp
                *extra_mounts,
            ],
            key=lambda m: str(m["mountPath"]),
        ),
    }


def _volumes() -> list[dict[str, Any]]:
    return [
        config_map_volume("config", INIT_CONFIG),
        empty_dir("run"),
        empty_dir("tmp"),
    ]


def _role_env(t: EffectiveTenant) -> list[dict[str, Any]]:
    return [
        env("POSTGRES_USER", SUPERUSER),
        secret_env("POSTGRES_PASSWORD", POSTGRES_SECRET, POSTGRES_SUPERUSER_PASSWORD_KEY),
        env("POSTGRES_DB", t.postgres.database),
        secret_env("APP_USER", POSTGRES_SECRET, POSTGRES_USER_KEY),
        secret_env("APP_PASSWORD", POSTGRES_SECRET, POSTGRES_PASSWORD_KEY),
        env("REPLICATION_USER", REPLICATION_USER),
        secret_env("REPLICATION_PASSWORD", POSTGRES_SECRET, POSTGRES_REPLICATION_PASSWORD_KEY),
    ]


def _upkeep(t: EffectiveTenant) -> dict[str, Any]:
    synced = {"exec": {"command": ["test", "-e", SYNCED_MARKER]}, "periodSeconds": 5}
    return {
        "name": "upkeep",
        "image": image(t),
        "command": [UPKEEP_PROGRAM],
        "env": [
            *_role_env(t),
            env("READY_MARKER", SYNCED_MARKER),
            env("SLOTS_FILE", f"{CONFIG_DIR}/{SLOTS_KEY}"),
            env("SLOT_WAL_LIMIT_FILE", f"{CONFIG_DIR}/{SLOT_WAL_LIMIT_KEY}"),
            env("ARCHIVE_TIMEOUT_FILE", f"{CONFIG_DIR}/{ARCHIVE_TIMEOUT_KEY}"),
            env("SLOT_PREFIX", SLOT_PREFIX),
            env("ADMIN_ACCOUNTS_FILE", f"{ADMIN_ROLES_DIR}/{POSTGRES_ADMIN_ROLES_KEY}"),
            env("ISOLATION_FILE", f"{CONFIG_DIR}/{ISOLATION_KEY}"),
        ],
        # The pod is Ready only once the database takes the Secret's passwords.
        "readinessProbe": synced,
        "startupProbe": startup_probe(synced),
        "resources": SIDECAR_RESOURCES,
        "securityContext": container_security_context(read_only_root_filesystem=True),
        "volumeMounts": [
            mount("admin-roles", ADMIN_ROLES_DIR, read_only=True),
            mount("config", CONFIG_DIR, read_only=True),
            mount("run", RUN_DIR),
            mount("tmp", "/tmp"),  # noqa: S108 - a private emptyDir
        ],
    }


def _primary(t: EffectiveTenant) -> Manifest:
    a, r = t.archiving, t.restore
    # With a restore (spec.bootstrap), the first start on an empty volume
    # restores the source's archive instead of initdb (the image's entrypoint).
    server = _postgres_container(
        t, "postgres",
        SERVER_ARGS + (archiving.server_args() if a else []),
        _role_env(t) + (archiving.environment(a, t.name) if a else [])
        + (archiving.primary_restore_environment(r) if r else []),
        (archiving.mounts(a) if a else []) + (archiving.restore_mounts(r) if r else []),
        ANSWERS_ON_TCP)
    # Not the replicas': a startup probe holds a container's liveness probe back
    # until it first passes, and a replica's liveness probe is what re-clones a
    # copy that can never become ready.
    server["startupProbe"] = startup_probe(server["readinessProbe"])
    sidecars = [_upkeep(t), exporters.postgres_exporter(
        t.postgres.version, "config", CONFIG_DIR, EXPORTER_QUERIES_KEY)]
    if a is not None:
        sidecars.append(archiving.archiver_container(a, t.name, image(t), SIDECAR_RESOURCES))
    spec = pod_spec(
        containers=[server, *sidecars],
        user_id=POSTGRES_UID,
        volumes=[
            *_volumes(),
            # Readable by the pod's group only (fsGroup): it holds passwords.
            {"name": "admin-roles",
             "secret": {"secretName": POSTGRES_ADMIN_ROLES_SECRET, "defaultMode": 0o440}},
            *(archiving.volumes(a) if a else []),
            *(archiving.restore_volumes(r) if r else []),
        ],
    )
    return stateful_set(
        t,
        NAME,
        COMPONENT,
        # One primary: PostgreSQL has no multi-writer mode; reads scale out below.
        replicas_=0 if t.primary_stopped else replicas(t, 1),
        # An in-place recovery restores into the next pod number, so a new claim,
        # and keeps the claim of the database it recovers over (reconcile/recovery.py).
        first_ordinal=t.primary_ordinal,
        service_name=HEADLESS,
        template=pod_template(labels(t, COMPONENT), spec, config=_config_digest()),
        claims=[volume_claim_template("data", t.postgres.storage, t.postgres.storage_class_name)],
    )


def _replicas(t: EffectiveTenant) -> Manifest:
    password = secret_env("PGPASSWORD", POSTGRES_SECRET, POSTGRES_REPLICATION_PASSWORD_KEY)
    pod_index = field_env("POD_INDEX", f"metadata.labels['{POD_INDEX_LABEL}']")
    # The kubelet expands $(POD_INDEX) from the variable defined before it.
    slot = f"{SLOT_PREFIX}$(POD_INDEX)"
    # The walreceiver is a libpq client: it takes the password from PGPASSWORD
    # in the server's environment, so primary_conninfo names none.
    conninfo = (
        f"host={NAME} port={POSTGRES_PORT} user={REPLICATION_USER} application_name=$(POD_NAME)"
    )
    server = _postgres_container(
        t,
        "postgres",
        [*SERVER_ARGS, "-c", f"primary_conninfo={conninfo}", "-c", f"primary_slot_name={slot}"],
        [
            field_env("POD_NAME", "metadata.name"),
            pod_index,
            env("PRIMARY_HOST", NAME),
            env("PRIMARY_PORT", str(POSTGRES_PORT)),
            env("REPLICATION_USER", REPLICATION_USER),
            env("REPLICATION_SLOT", slot),
            password,
        ],
        [],
        # Ready only while streaming: a replica that lost its primary or its WAL
        # leaves the read Service instead of serving ever older data.
        [REPLICA_READY_PROGRAM],
    )
    # The clone is the container's own start, not an init container's: when the
    # liveness probe proves the copy can never follow the primary again (its
    # WAL is gone, the primary is another cluster), the restart it causes
    # clones anew, and an init container does not run on a container restart.
    server["command"] = [CLONE_PROGRAM, ENTRYPOINT]
    server["livenessProbe"] = {
        "exec": {"command": [REPLICA_FOLLOWS_PROGRAM]},
        # The program gathers its proof over several probes itself (STALL_CHECKS)
        # and fails only on it; a second failure in a row guards against one
        # probe that could not run (an exec error, a timeout) restarting it.
        "periodSeconds": 10,
        "timeoutSeconds": 10,
        "failureThreshold": 2,
    }
    spec = pod_spec(containers=[server], user_id=POSTGRES_UID, volumes=_volumes())
    return stateful_set(
        t,
        REPLICA_NAME,
        REPLICA_COMPONENT,
        # Stopped (not removed) while an in-place recovery replaces the primary.
        replicas_=0 if t.writes_stopped else replicas(t, t.postgres.read_replicas),
        # Replicas are reached through postgres-read only; nothing needs their
        # per-pod DNS names, so the read Service governs the set.
        service_name=READ_SERVICE,
        template=pod_template(labels(t, REPLICA_COMPONENT), spec, config=_config_digest()),
        claims=[volume_claim_template("data", t.postgres.storage, t.postgres.storage_class_name)],
        parallel=True,
        # A replica on its primary's node would go down with it.
        apart_from=[selector_labels(t, COMPONENT)],
    )


def _config_digest() -> str:
    # pg_hba.conf is read at start: a change must roll the pods. (The programs
    # come with the image, whose reference is in the template already.)
    # The exporter reads its queries once, at its start.
    return config_hash(PG_HBA + exporters.POSTGRES_EXPORTER_QUERIES)
