"""WAL archiving of a tenant's primary through pgBackRest: its settings, environment and sidecar.

The primary's server archives every WAL segment with ``archive_command``
(``stackforge-pgbackrest archive-push %p``, asynchronous, with its spool on the
data volume); the ``archiver`` sidecar creates the repository's stanza and
makes sure a quiet database still closes a segment every ``archive_timeout``
so that the age of the newest archived segment tells whether archiving works
(reconcile/archive_status.py). Both run the image's programs
(images/postgres/), which take every pgBackRest option from the environment
built here (pgBackRest reads ``PGBACKREST_<OPTION>`` itself) and the
repository path from the incarnation file: ``<base>/<incarnation>``.

Secrets are referenced as optional: a missing one fails archiving (and the
policy says so), never the database's start.

Physical backups are asked of the archiver too: the operator writes a request
on the primary pod (``REQUEST_ANNOTATION``, ``request_value``), the kubelet
puts it in a file of the sidecar (a downward API volume, refreshed on every
sync of the pod: seconds), and the sidecar runs pgBackRest's backup where the
data directory is. The request is the pod's, so it goes with the pod: a new
primary is asked again. Its result is the repository itself
(reconcile/physical_backups.py reads it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from stackforge_operator import API_GROUP
from stackforge_operator.builders import s3ca
from stackforge_operator.builders.backup_network import url_host_port
from stackforge_operator.builders.common import (
    container_security_context,
    env,
    mount,
    secret_env,
)
from stackforge_operator.builders.postgres_paths import DATA_DIR, INCARNATION_FILE, PGDATA, RUN_DIR
from stackforge_operator.models.backup import (
    DEFAULT_REGION,
    CredentialsRef,
    EndpointCA,
    ObjectStorage,
    PhysicalBackupType,
    PhysicalRetention,
)
from stackforge_operator.models.common import SecretKeyRef
from stackforge_operator.models.effective import Archiving, Restore

# Programs of the PostgreSQL image.
PGBACKREST_PROGRAM: Final = "stackforge-pgbackrest"
ARCHIVER_PROGRAM: Final = "stackforge-archiver"
ARCHIVER_CONTAINER: Final = "archiver"
# Under the policy's prefix, beside the tenants' logical runs: no tenant can be
# called this (object names have no "_"), so no tenant's runs are ever here.
REPOSITORY_DIR: Final = "_pgbackrest"
# On the data volume, outside PGDATA: a replica's clone must not copy it.
SPOOL_PATH: Final = f"{DATA_DIR}/pgbackrest-spool"
CIPHER_TYPE: Final = "aes-256-cbc"
COMPRESS_TYPE: Final = "zst"
# The physical backup the archiver is asked for (see the module).
REQUEST_ANNOTATION: Final = f"{API_GROUP}/physical-backup-request"
REQUEST_VOLUME: Final = "backup-request"
REQUEST_DIR: Final = "/etc/stackforge/backup-request"
REQUEST_FILE: Final = f"{REQUEST_DIR}/request"
_REQUEST_ID_FORMAT: Final = "%Y%m%dT%H%M%SZ"
# Where stackforge-restore takes the source repository's pgBackRest options from.
RESTORE_OPTION_PREFIX: Final = "STACKFORGE_RESTORE_"
# A restoring primary's copy of the source endpoint's CA (its own archive's is s3ca's).
RESTORE_CA_VOLUME: Final = "restore-s3-ca"
RESTORE_CA_DIR: Final = "/etc/stackforge/restore-s3-ca"
_REQUEST_RE: Final = re.compile(r"^(\d{8}T\d{6}Z) (full|diff|incr) (count|time) (\d{1,4})$")


@dataclass(frozen=True)
class BackupRequest:
    """A physical backup asked of the archiver: what, and what pgBackRest's expiry keeps after."""

    requested_at: datetime
    type: PhysicalBackupType
    retention_type: str  # pgBackRest's repo1-retention-full-type: count or time (days)
    retention: int

    @property
    def id(self) -> str:
        return self.requested_at.astimezone(UTC).strftime(_REQUEST_ID_FORMAT)


def backup_request(at: datetime, kind: PhysicalBackupType,
                   retention: PhysicalRetention) -> BackupRequest:
    if retention.full_count is not None:
        return BackupRequest(at.replace(microsecond=0), kind, "count", retention.full_count)
    if retention.full_days is None:
        raise ValueError("physicalBackups.retention sets neither fullCount nor fullDays")
    return BackupRequest(at.replace(microsecond=0), kind, "time", retention.full_days)


def request_value(request: BackupRequest) -> str:
    """The annotation's value, as stackforge-archiver parses it: four words."""
    return f"{request.id} {request.type.value} {request.retention_type} {request.retention}"


def parse_request(value: str | None) -> BackupRequest | None:
    """The request an annotation holds (None: none, or not one of ours)."""
    match = _REQUEST_RE.match(value or "")
    if match is None:
        return None
    at = datetime.strptime(match.group(1), _REQUEST_ID_FORMAT).replace(tzinfo=UTC)
    return BackupRequest(at, PhysicalBackupType(match.group(2)), match.group(3),
                         int(match.group(4)))


def stanza(tenant: str) -> str:
    return tenant


def repository_base(storage: ObjectStorage, tenant: str) -> str:
    """The tenant's repositories' parent (pgBackRest's repo1-path, less the incarnation)."""
    return f"/{storage.prefix}/{REPOSITORY_DIR}/{tenant}"


def repository_key_prefix(storage: ObjectStorage, tenant: str) -> str:
    """The same place as an object key prefix (no leading slash, a trailing one)."""
    return f"{repository_base(storage, tenant).lstrip('/')}/"


def server_args() -> list[str]:
    """Settings of the primary's server (archive_mode is read only at a start).
    Not archive_timeout: a -c argument outranks ALTER SYSTEM, and the upkeep
    sidecar sets it from the live ConfigMap, so a new timeout restarts nothing."""
    return [
        "-c", "archive_mode=on",
        "-c", f"archive_command={PGBACKREST_PROGRAM} archive-push %p",
    ]  # fmt: skip


def _endpoint(storage: ObjectStorage) -> tuple[str, int | None]:
    """pgBackRest wants a host and a port apart; AWS's regional endpoint when none is named."""
    if storage.endpoint is None:
        return f"s3.{storage.region or DEFAULT_REGION}.amazonaws.com", None
    host, port = url_host_port(storage.endpoint)
    return host, None if port == 443 else port


def environment(a: Archiving, tenant: str) -> list[dict[str, Any]]:
    """pgBackRest's options for the server's archive_command and the archiver sidecar."""
    storage = a.storage
    host, port = _endpoint(storage)
    out = [
        env("PGBACKREST_STANZA", stanza(tenant)),
        env("PGBACKREST_PG1_PATH", PGDATA),
        env("PGBACKREST_PG1_SOCKET_PATH", RUN_DIR),
        env("PGBACKREST_PG1_USER", "postgres"),
        env("PGBACKREST_REPO1_TYPE", "s3"),
        env("PGBACKREST_REPO1_S3_BUCKET", storage.bucket),
        env("PGBACKREST_REPO1_S3_ENDPOINT", host),
        env("PGBACKREST_REPO1_S3_REGION", storage.region or DEFAULT_REGION),
        env("PGBACKREST_REPO1_S3_URI_STYLE", "path" if storage.force_path_style else "host"),
        env("PGBACKREST_REPO1_CIPHER_TYPE", CIPHER_TYPE),
        secret_env("PGBACKREST_REPO1_CIPHER_PASS", a.cipher.name, a.cipher.key, optional=True),
        env("PGBACKREST_COMPRESS_TYPE", COMPRESS_TYPE),
        # A backup's small files go into a few bundle objects, not an object
        # each: a fresh database is a thousand files, and every object is a
        # request to S3 (time, and money on AWS).
        env("PGBACKREST_REPO1_BUNDLE", "y"),
        # archive_command returns as soon as the segment is in the spool; a
        # background process pushes the queue, several segments at a time.
        env("PGBACKREST_ARCHIVE_ASYNC", "y"),
        env("PGBACKREST_SPOOL_PATH", SPOOL_PATH),
        # Its messages go to the server's log (the container's output), not to files.
        env("PGBACKREST_LOG_LEVEL_FILE", "off"),
        env("STACKFORGE_REPOSITORY_BASE", repository_base(storage, tenant)),
        env("STACKFORGE_INCARNATION_FILE", INCARNATION_FILE),
    ]
    if port is not None:
        out.append(env("PGBACKREST_REPO1_STORAGE_PORT", str(port)))
    creds = storage.credentials_secret_ref
    if creds is None:
        # The pod's own identity (an IAM role for its service account).
        out.append(env("PGBACKREST_REPO1_S3_KEY_TYPE", "auto"))
    else:
        out += [
            secret_env("PGBACKREST_REPO1_S3_KEY", creds.name, creds.access_key_id_key,
                       optional=True),
            secret_env("PGBACKREST_REPO1_S3_KEY_SECRET", creds.name,
                       creds.secret_access_key_key, optional=True),
        ]
    if storage.endpoint_ca is not None:
        out.append(env("PGBACKREST_REPO1_STORAGE_CA_FILE", s3ca.CA_PATH))
    sse = storage.server_side_encryption
    if sse is not None and sse.kms_key_id:
        # AES256 needs nothing: pgBackRest 2.45 cannot ask for it per object,
        # and the bucket's default encryption applies.
        out.append(env("PGBACKREST_REPO1_S3_KMS_KEY_ID", sse.kms_key_id))
    return sorted(out, key=lambda e: str(e["name"]))


def storage_with_copies(storage: ObjectStorage, *, credentials: str, key_id_key: str,
                        secret_key_key: str, ca: str) -> ObjectStorage:
    """``storage`` as a pod of another namespace reads it: its Secrets named by the
    copies there (``credentials`` with the two keys, ``ca`` under s3ca's file name)."""
    creds = storage.credentials_secret_ref
    return storage.model_copy(update={
        "credentials_secret_ref": None if creds is None else CredentialsRef(
            name=credentials, access_key_id_key=key_id_key,
            secret_access_key_key=secret_key_key),
        "endpoint_ca": None if storage.endpoint_ca is None else EndpointCA(
            name=ca, key=s3ca.CA_FILE_NAME),
    })


def restore_environment(storage: ObjectStorage, cipher: SecretKeyRef, *, stanza_name: str,
                        repository_path: str, target: str,
                        ca_file: str = s3ca.CA_PATH) -> list[dict[str, Any]]:
    """stackforge-restore's settings: a repository (an incarnation's path in ``storage``,
    whose Secrets and ``cipher`` the pod can read) restored to ``target``; ``ca_file``
    is where the pod has ``storage.endpointCA``.

    The source's pgBackRest options go under ``RESTORE_OPTION_PREFIX``, apart
    from the server's own ``PGBACKREST_*``, which may name the repository a
    restored tenant archives to (images/postgres/stackforge-restore.sh).
    """
    source = Archiving(policy="", storage=storage, archive_timeout_seconds=0, cipher=cipher)
    options = [{**e, "name": RESTORE_OPTION_PREFIX + str(e["name"])}
               for e in environment(source, stanza_name)
               if str(e["name"]).startswith("PGBACKREST_")]
    for option in options:
        if option["name"] == f"{RESTORE_OPTION_PREFIX}PGBACKREST_REPO1_STORAGE_CA_FILE":
            option["value"] = ca_file
    return [
        env("STACKFORGE_RESTORE_REPOSITORY", repository_path),
        env("STACKFORGE_RESTORE_STANZA", stanza(stanza_name)),
        env("STACKFORGE_RESTORE_TARGET", target),
        *options,
    ]


def restore_volumes(r: Restore) -> list[dict[str, Any]]:
    """The source endpoint's CA for a restoring primary, apart from its own archive's."""
    ca = r.storage.endpoint_ca
    if ca is None:
        return []
    return [{"name": RESTORE_CA_VOLUME, "secret": {
        "secretName": ca.name, "optional": True,
        "items": [{"key": ca.key, "path": s3ca.CA_FILE_NAME}]}}]


def restore_mounts(r: Restore) -> list[dict[str, Any]]:
    if r.storage.endpoint_ca is None:
        return []
    return [mount(RESTORE_CA_VOLUME, RESTORE_CA_DIR, read_only=True)]


def primary_restore_environment(r: Restore) -> list[dict[str, Any]]:
    return restore_environment(r.storage, r.cipher, stanza_name=r.source_tenant,
                               repository_path=r.repository_path, target=r.target,
                               ca_file=f"{RESTORE_CA_DIR}/{s3ca.CA_FILE_NAME}")


def volumes(a: Archiving) -> list[dict[str, Any]]:
    # The request volume is there whenever the pod archives: physical backups
    # can then be turned on and off without a restart of the primary.
    request = {"name": REQUEST_VOLUME, "downwardAPI": {"items": [{
        "path": REQUEST_FILE.rsplit("/", 1)[-1],
        "fieldRef": {"fieldPath": f"metadata.annotations['{REQUEST_ANNOTATION}']"},
    }]}}
    ca = a.storage.endpoint_ca
    if ca is None:
        return [request]
    volume = s3ca.volume(ca.name, ca.key)
    volume["secret"]["optional"] = True
    return [volume, request]


def mounts(a: Archiving) -> list[dict[str, Any]]:
    return [s3ca.mount()] if a.storage.endpoint_ca is not None else []


def archiver_container(
    a: Archiving, tenant: str, image: str, resources: dict[str, Any]
) -> dict[str, Any]:
    """The sidecar: the stanza, then a WAL record twice per archive_timeout and
    the physical backups asked for (see the module)."""
    return {
        "name": ARCHIVER_CONTAINER,
        "image": image,
        "command": [ARCHIVER_PROGRAM],
        # No heartbeat period: the archiver reads the server's archive_timeout
        # at each beat (an env of it would restart the pod at every change).
        "env": [*environment(a, tenant),
                env("PGHOST", RUN_DIR),
                env("REQUEST_FILE", REQUEST_FILE)],
        "resources": resources,
        "securityContext": container_security_context(read_only_root_filesystem=True),
        "volumeMounts": sorted(
            [
                # pgBackRest reads pg_control and the incarnation file; it writes nothing there.
                mount("data", DATA_DIR, read_only=True),
                mount(REQUEST_VOLUME, REQUEST_DIR, read_only=True),
                mount("run", RUN_DIR),
                mount("tmp", "/tmp"),  # noqa: S108 - the pod's private emptyDir
                *mounts(a),
            ],
            key=lambda m: str(m["mountPath"]),
        ),
    }
