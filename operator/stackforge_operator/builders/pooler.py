"""PgBouncer in front of the PostgreSQL primary (runbook: Database Scaling).

pgbouncer.ini lives in a ConfigMap and holds no password; PgBouncer reads the
application user's password from an auth file that an init container (the
image's ``stackforge-pgbouncer-userlist``, images/pgbouncer/) writes into a
memory-backed emptyDir from the credentials Secret.
"""

from __future__ import annotations

from stackforge_operator import image_catalog
from stackforge_operator.builders.common import (
    POOLER_PORT,
    POSTGRES_PORT,
    Manifest,
    config_hash,
    config_map,
    config_map_volume,
    container_port,
    container_security_context,
    deployment,
    env,
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
)
from stackforge_operator.builders.postgres import NAME as POSTGRES_SERVICE
from stackforge_operator.builders.secrets_names import (
    POSTGRES_PASSWORD_KEY,
    POSTGRES_SECRET,
    POSTGRES_USER_KEY,
)
from stackforge_operator.models.effective import EffectiveTenant

COMPONENT = "pooler"
NAME = "pooler"
CONFIG = "pooler-config"
# Any non-root uid works: PgBouncer writes nothing but the auth file below.
POOLER_UID = 998
CONFIG_DIR = "/etc/pgbouncer"
AUTH_DIR = "/var/run/pgbouncer-auth"
AUTH_FILE = f"{AUTH_DIR}/userlist.txt"

USERLIST_PROGRAM = "stackforge-pgbouncer-userlist"

# PostgreSQL's max_connections and superuser_reserved_connections: initdb's
# defaults, which the image keeps (no server argument sets them, and changing
# one would restart every tenant's database).
POSTGRES_MAX_CONNECTIONS = 100
POSTGRES_SUPERUSER_RESERVED = 3
# Left for whoever logs in without the pooler: the primary's upkeep sidecar and
# exporter, backups and the archiver's checks, admin accounts, apps that connect
# directly.
DIRECT_CONNECTIONS = 22
POOLED_CONNECTIONS = POSTGRES_MAX_CONNECTIONS - POSTGRES_SUPERUSER_RESERVED - DIRECT_CONNECTIONS


def server_connections_per_pooler(t: EffectiveTenant) -> int:
    """What one PgBouncer may open to the primary (``max_db_connections``).

    ``default_pool_size`` is per pooler: two Enterprise poolers of 100 would ask
    for 200 of PostgreSQL's 100 connections, and the ones past the limit fail
    ("too many clients") while the operator's own sidecars lose theirs. The
    pooled share is split over every pooler that may run at once: the replicas
    and the one a rolling update adds (maxSurge 1)."""
    return max(1, POOLED_CONNECTIONS // (t.postgres.pooler.replicas + 1))


def build(t: EffectiveTenant) -> list[Manifest]:
    if not (t.postgres.enabled and t.postgres.pooler.enabled):
        return []
    ini = pgbouncer_ini(t)
    return [
        config_map(t, CONFIG, COMPONENT, {"pgbouncer.ini": ini}),
        service(
            t,
            NAME,
            COMPONENT,
            selector=selector_labels(t, COMPONENT),
            ports=[service_port("pgbouncer", POOLER_PORT)],
        ),
        _deployment(t, config_hash(ini)),
    ]


def pgbouncer_ini(t: EffectiveTenant) -> str:
    p = t.postgres.pooler
    db = t.postgres.database
    return f"""\
[databases]
{db} = host={POSTGRES_SERVICE} port={POSTGRES_PORT} dbname={db}

[pgbouncer]
listen_addr = 0.0.0.0
listen_port = {POOLER_PORT}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {AUTH_FILE}
pool_mode = {p.pool_mode}
default_pool_size = {p.default_pool_size}
max_db_connections = {server_connections_per_pooler(t)}
max_client_conn = {p.max_client_connections}
ignore_startup_parameters = extra_float_digits
logfile =
pidfile =
log_connections = 0
log_disconnections = 0
"""


# How long a pooler pod being replaced keeps serving (see _deployment).
DRAIN_SECONDS = 5


def _deployment(t: EffectiveTenant, digest: str) -> Manifest:
    image = image_catalog.current().pgbouncer
    userlist = {
        "name": "userlist",
        "image": image,
        "command": [USERLIST_PROGRAM],
        "env": [
            env("USERLIST_FILE", AUTH_FILE),
            secret_env("DB_USER", POSTGRES_SECRET, POSTGRES_USER_KEY),
            secret_env("DB_PASSWORD", POSTGRES_SECRET, POSTGRES_PASSWORD_KEY),
        ],
        "resources": resources(t.postgres.pooler.resources),
        "securityContext": container_security_context(read_only_root_filesystem=True),
        "volumeMounts": [mount("auth", AUTH_DIR)],
    }
    listening = {"tcpSocket": {"port": "pgbouncer"}, "periodSeconds": 10}
    alive = {"tcpSocket": {"port": "pgbouncer"}, "periodSeconds": 20, "failureThreshold": 6}
    pgbouncer = {
        "name": "pgbouncer",
        "image": image,
        "command": ["pgbouncer", f"{CONFIG_DIR}/pgbouncer.ini"],
        "ports": [container_port("pgbouncer", POOLER_PORT)],
        "readinessProbe": listening,
        "startupProbe": startup_probe(listening, alive),
        "livenessProbe": alive,
        # A pod being replaced leaves the Service's endpoints at once, but each
        # node's kube-proxy learns it a moment later: stopped at once (the
        # image's STOPSIGNAL, PgBouncer's safe shutdown), it refused the new
        # connections still sent its way during a rollout. It serves a while
        # longer instead.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(DRAIN_SECONDS)]}}},
        "resources": resources(t.postgres.pooler.resources),
        "securityContext": container_security_context(read_only_root_filesystem=True),
        "volumeMounts": [
            mount("auth", AUTH_DIR, read_only=True),
            mount("config", CONFIG_DIR, read_only=True),
        ],
    }
    volumes = [
        # Memory-backed: the plaintext auth file never reaches the node's disk.
        {"name": "auth", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        config_map_volume("config", CONFIG),
    ]
    spec = pod_spec(
        containers=[pgbouncer], init_containers=[userlist], user_id=POOLER_UID, volumes=volumes
    )
    return deployment(
        metadata(t, NAME, COMPONENT),
        replicas_=replicas(t, t.postgres.pooler.replicas),
        selector=selector_labels(t, COMPONENT),
        template=pod_template(labels(t, COMPONENT), spec, config=digest),
    )
