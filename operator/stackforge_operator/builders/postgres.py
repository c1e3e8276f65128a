"""PostgreSQL: a primary StatefulSet, optional streaming read replicas, their Services.

The primary is initialised by the official image's entrypoint; our init script
(ConfigMap ``postgres-init``) adds the application and replication roles with
passwords read from the environment, so no credential ever sits in a manifest.
A small sidecar sets the roles' passwords from the Secret again at every start
of the primary: a credentials rotation restarts the pods, and the database
must then accept the new passwords, not only the clients hold them.
"""

from __future__ import annotations

from typing import Any

from stackforge_operator import image_catalog
from stackforge_operator.builders import exporters
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
    mount,
    pod_spec,
    pod_template,
    replicas,
    resources,
    secret_env,
    selector_labels,
    service,
    service_port,
    stateful_set,
    volume_claim_template,
)
from stackforge_operator.builders.secrets_names import (
    POSTGRES_PASSWORD_KEY,
    POSTGRES_REPLICATION_PASSWORD_KEY,
    POSTGRES_SECRET,
    POSTGRES_SUPERUSER_PASSWORD_KEY,
    POSTGRES_USER_KEY,
)
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

DATA_DIR = "/var/lib/postgresql/data"
# A subdirectory: the volume's root may hold lost+found, which initdb refuses.
PGDATA = f"{DATA_DIR}/pgdata"
CONFIG_DIR = "/etc/postgresql/stackforge"
HBA_FILE = f"{CONFIG_DIR}/pg_hba.conf"
INITDB_DIR = "/docker-entrypoint-initdb.d"
INIT_SCRIPT = "10-stackforge-roles.sh"
SYNC_SCRIPT = "sync-role-passwords.sh"
RUN_DIR = "/var/run/postgresql"
SYNCED_MARKER = "/tmp/role-passwords-synced"  # noqa: S108 - the pod's own emptyDir

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

# Runs once, on the empty data directory, inside the entrypoint's temporary
# server. psql's :'var' quoting keeps any password character harmless.
INIT_SH = """\
#!/bin/sh
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \\
  --set app_user="$APP_USER" --set app_password="$APP_PASSWORD" \\
  --set db="$POSTGRES_DB" \\
  --set repl_user="$REPLICATION_USER" --set repl_password="$REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE :"app_user" LOGIN PASSWORD :'app_password';
ALTER DATABASE :"db" OWNER TO :"app_user";
CREATE ROLE :"repl_user" WITH REPLICATION LOGIN PASSWORD :'repl_password';
SQL
"""

# Runs in the primary's "role-sync" sidecar at every pod start: retries until
# the server is up and the roles exist, then marks the pod ready to serve.
SYNC_SH = f"""\
#!/bin/sh
set -u
trap 'exit 0' TERM
rm -f {SYNCED_MARKER}
until psql -v ON_ERROR_STOP=1 --quiet --no-psqlrc --host={RUN_DIR} \\
  --username=postgres --dbname=postgres \\
  --set superuser="$POSTGRES_USER" --set superuser_password="$POSTGRES_PASSWORD" \\
  --set app_user="$APP_USER" --set app_password="$APP_PASSWORD" \\
  --set repl_user="$REPLICATION_USER" --set repl_password="$REPLICATION_PASSWORD" <<'SQL'
ALTER ROLE :"superuser" PASSWORD :'superuser_password';
ALTER ROLE :"app_user" PASSWORD :'app_password';
ALTER ROLE :"repl_user" PASSWORD :'repl_password';
SQL
do
  sleep 5
done
touch {SYNCED_MARKER}
echo "role passwords match the credentials Secret"
while :; do sleep 3600 & wait $!; done
"""
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

# Restart on a standby that was cloned before: keep its data, only make sure it
# still starts as a standby. A fresh one is cloned from the primary's Service.
BASEBACKUP_SH = f"""\
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  rm -rf "$PGDATA"
  pg_basebackup --host={NAME} --port={POSTGRES_PORT} --username={REPLICATION_USER} \\
    --pgdata="$PGDATA" --wal-method=stream --checkpoint=fast --no-password
fi
chmod 0700 "$PGDATA"
touch "$PGDATA/standby.signal"
"""


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
        {INIT_SCRIPT: INIT_SH, SYNC_SCRIPT: SYNC_SH, "pg_hba.conf": PG_HBA},
    )


def _postgres_container(
    t: EffectiveTenant,
    name: str,
    args: list[str],
    extra_env: list[dict[str, Any]],
    extra_mounts: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "name": name,
        "image": image(t),
        "args": args,
        "env": [env("PGDATA", PGDATA), *extra_env],
        "ports": [container_port("postgres", POSTGRES_PORT)],
        "readinessProbe": {
            "exec": {"command": ["pg_isready", "--host=127.0.0.1", f"--port={POSTGRES_PORT}"]},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        # No liveness probe: killing a server in crash recovery restarts the
        # recovery from scratch and never lets it finish.
        "resources": resources(t.postgres.resources),
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


def _role_sync(t: EffectiveTenant) -> dict[str, Any]:
    return {
        "name": "role-sync",
        "image": image(t),
        "command": ["sh", f"{CONFIG_DIR}/{SYNC_SCRIPT}"],
        "env": _role_env(t),
        # The pod is Ready only once the database takes the Secret's passwords.
        "readinessProbe": {"exec": {"command": ["test", "-e", SYNCED_MARKER]}, "periodSeconds": 5},
        "resources": SIDECAR_RESOURCES,
        "securityContext": container_security_context(read_only_root_filesystem=True),
        "volumeMounts": [
            mount("config", CONFIG_DIR, read_only=True),
            mount("run", RUN_DIR),
            mount("tmp", "/tmp"),  # noqa: S108 - a private emptyDir
        ],
    }


def _primary(t: EffectiveTenant) -> Manifest:
    server = _postgres_container(
        t,
        "postgres",
        SERVER_ARGS,
        _role_env(t),
        [mount("initdb", INITDB_DIR, read_only=True)],
    )
    # Only the init script goes there: the entrypoint runs every *.sh it finds,
    # and the endless sync script would hang the initialisation.
    initdb = config_map_volume("initdb", INIT_CONFIG, mode=0o555, keys=[INIT_SCRIPT])
    spec = pod_spec(
        containers=[server, _role_sync(t), exporters.postgres_exporter(t.postgres.version)],
        user_id=POSTGRES_UID,
        volumes=[*_volumes(), initdb],
    )
    return stateful_set(
        t,
        NAME,
        COMPONENT,
        # One primary: PostgreSQL has no multi-writer mode; reads scale out below.
        replicas_=replicas(t, 1),
        service_name=HEADLESS,
        template=pod_template(labels(t, COMPONENT), spec, config=_config_digest()),
        claims=[volume_claim_template("data", t.postgres.storage, t.postgres.storage_class_name)],
    )


def _replicas(t: EffectiveTenant) -> Manifest:
    password = secret_env("PGPASSWORD", POSTGRES_SECRET, POSTGRES_REPLICATION_PASSWORD_KEY)
    clone = {
        "name": "basebackup",
        "image": image(t),
        "command": ["sh", "-c", BASEBACKUP_SH],
        "env": [env("PGDATA", PGDATA), password],
        "resources": resources(t.postgres.resources),
        "securityContext": container_security_context(read_only_root_filesystem=True),
        "volumeMounts": [mount("data", DATA_DIR), mount("tmp", "/tmp")],  # noqa: S108
    }
    # The walreceiver is a libpq client: it takes the password from PGPASSWORD
    # in the server's environment, so primary_conninfo names none.
    conninfo = (
        f"host={NAME} port={POSTGRES_PORT} user={REPLICATION_USER} application_name=$(POD_NAME)"
    )
    server = _postgres_container(
        t,
        "postgres",
        [*SERVER_ARGS, "-c", f"primary_conninfo={conninfo}"],
        [field_env("POD_NAME", "metadata.name"), password],
        [],
    )
    spec = pod_spec(
        containers=[server], init_containers=[clone], user_id=POSTGRES_UID, volumes=_volumes()
    )
    return stateful_set(
        t,
        REPLICA_NAME,
        REPLICA_COMPONENT,
        replicas_=replicas(t, t.postgres.read_replicas),
        # Replicas are reached through postgres-read only; nothing needs their
        # per-pod DNS names, so the read Service governs the set.
        service_name=READ_SERVICE,
        template=pod_template(labels(t, REPLICA_COMPONENT), spec, config=_config_digest()),
        claims=[volume_claim_template("data", t.postgres.storage, t.postgres.storage_class_name)],
        parallel=True,
    )


def _config_digest() -> str:
    # pg_hba.conf and the sync script are read at start: a change must roll the
    # pods. The init script only ever runs on an empty volume, so it does not count.
    return config_hash(PG_HBA, SYNC_SH)
