"""BackupPolicy: scheduled backups of one tenant to S3-compatible object storage.

Namespaced, normally in the tenant's namespace; the Secrets it names live
beside it.  Unset schedule and time zone fall back to the tenant's
``spec.backup`` and then to the tier (02:00 daily, Etc/UTC).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field, StrictBool, StrictInt

from stackforge_operator.models.cel import Rule, ServerDefault
from stackforge_operator.models.common import (
    DNS_SUBDOMAIN_RE,
    SECRET_KEY_RE,
    Conditions,
    Cron,
    DNSLabel,
    HttpUrl,
    LocalObjectRef,
    SecretKeyRef,
    SpecModel,
    StatusModel,
    TimeZone,
    condition_list_field,
    unique,
)


class BackupTarget(enum.StrEnum):
    """Something a backup run saves."""

    POSTGRES = "Postgres"  # pg_dump -Fc of the application database
    CONFIGURATION = "Configuration"  # the tenant's rendered objects, as JSON
    GRAFANA_DASHBOARDS = "GrafanaDashboards"  # dashboards exported over Grafana's HTTP API


DEFAULT_TARGETS = [BackupTarget.POSTGRES, BackupTarget.CONFIGURATION]


class GrafanaSource(SpecModel):
    """The Grafana whose dashboards are exported."""

    url: HttpUrl = Field(description="Base URL of Grafana, e.g. http://grafana.monitoring:3000.")
    api_token_secret_ref: SecretKeyRef = Field(description="Secret key holding an API token.")


class CredentialsRef(SpecModel):
    """A Secret with S3 access keys (omit to use an ambient identity, where the
    operator allows it: STACKFORGE_AMBIENT_S3_IDENTITY=allow)."""

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_RE)] = Field(
        description="Name of the Secret."
    )
    access_key_id_key: Annotated[str, Field(max_length=253, pattern=SECRET_KEY_RE)] = Field(
        "AWS_ACCESS_KEY_ID", description="Key holding the access key id."
    )
    secret_access_key_key: Annotated[str, Field(max_length=253, pattern=SECRET_KEY_RE)] = Field(
        "AWS_SECRET_ACCESS_KEY", description="Key holding the secret access key."
    )


DEFAULT_CA_KEY = "ca.crt"


class EndpointCA(SpecModel):
    """A Secret key holding the PEM CA bundle that verifies the S3 endpoint's certificate.

    For an endpoint whose certificate comes from a private CA: the runner Jobs
    mount the key and the operator verifies with it, instead of the system's
    public CAs.
    """

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_RE)] = Field(
        description="Name of the Secret, in the BackupPolicy's namespace."
    )
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=SECRET_KEY_RE)] = Field(
        DEFAULT_CA_KEY, description="Key holding the PEM bundle. Default: ca.crt."
    )


class SSEAlgorithm(enum.StrEnum):
    """S3 server-side encryption algorithm."""

    AES256 = "AES256"
    KMS = "aws:kms"


class ServerSideEncryption(SpecModel):
    """Server-side encryption of uploaded objects."""

    cel_rules = (
        Rule(
            cel="has(self.kmsKeyId) == (self.algorithm == 'aws:kms')",
            message=(
                "serverSideEncryption.kmsKeyId is required with algorithm aws:kms "
                "and not allowed otherwise"
            ),
            field_path=".kmsKeyId",
            check=lambda s: (s.kms_key_id is not None) == (s.algorithm == SSEAlgorithm.KMS),
        ),
    )

    algorithm: SSEAlgorithm = Field(description="AES256 (S3-managed keys) or aws:kms.")
    kms_key_id: Annotated[str, Field(min_length=1, max_length=2048)] | None = Field(
        None, description="KMS key id or ARN (aws:kms only)."
    )


# The region S3 clients sign for when the policy names none (AWS's default, and
# what S3-compatible servers accept).
DEFAULT_REGION = "us-east-1"


class DumpCompression(enum.StrEnum):
    """How the nightly pg_dump is compressed (backup/dump_format.py)."""

    GZIP = "Gzip"
    ZSTD = "Zstd"


class ObjectStorage(SpecModel):
    """Where backups are written: <prefix>/<tenant>/<run-id>/..."""

    bucket: Annotated[
        str, Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
    ] = Field(description="Bucket name.")
    prefix: Annotated[
        str, Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
    ] = Field("stackforge", description="Key prefix, without leading or trailing slash.")
    endpoint: HttpUrl | None = Field(
        None, description="S3-compatible endpoint URL (MinIO etc.). Default: AWS S3."
    )
    region: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z0-9-]+$")] | None = (
        Field(None, description=f"Region, e.g. eu-central-1. Default: {DEFAULT_REGION}.")
    )
    force_path_style: StrictBool | None = Field(
        None, description="Address buckets by path (most S3-compatible servers need it)."
    )
    credentials_secret_ref: CredentialsRef | None = Field(
        None, description="Access keys. Required unless the operator allows an ambient "
        "identity (STACKFORGE_AMBIENT_S3_IDENTITY=allow): then, without keys, the "
        "operator's own and the pods' ambient credentials."
    )
    endpoint_ca: EndpointCA | None = Field(
        None,
        alias="endpointCA",
        description=(
            "CA bundle verifying the endpoint's TLS certificate (private CA). "
            "Default: the system's public CAs."
        ),
    )
    server_side_encryption: ServerSideEncryption | None = Field(
        None, description="Encrypt objects at rest. Default: the bucket's setting."
    )


_MAX_AGE_COVERS_COUNTS = (
    "!has(self.maxAgeDays) || ("
    "(!has(self.daily) || self.maxAgeDays >= self.daily) && "
    "(!has(self.weekly) || self.maxAgeDays >= 7 * self.weekly) && "
    "(!has(self.monthly) || self.maxAgeDays >= 31 * self.monthly))"
)


def _max_age_covers_counts(r: Retention) -> bool:
    if r.max_age_days is None:
        return True
    return all(
        n is None or r.max_age_days >= days * n
        for n, days in ((r.daily, 1), (r.weekly, 7), (r.monthly, 31))
    )


class Retention(SpecModel):
    """Which complete backups to keep; a backup is kept if any rule keeps it.

    The newest complete backup is never deleted, nor the newest complete one
    holding a PostgreSQL dump, whatever the rules say. Days, weeks and months are
    those of the schedule's time zone.
    """

    cel_rules = (
        Rule(
            cel=(
                "has(self.keepLast) || has(self.daily) || has(self.weekly) || "
                "has(self.monthly) || has(self.maxAgeDays)"
            ),
            message=(
                "retention must set at least one of keepLast, daily, weekly, monthly, maxAgeDays"
            ),
            check=lambda r: any(
                v is not None for v in (r.keep_last, r.daily, r.weekly, r.monthly, r.max_age_days)
            ),
        ),
        Rule(
            cel=_MAX_AGE_COVERS_COUNTS,
            message=(
                "retention.maxAgeDays is shorter than the daily/weekly/monthly backups it must "
                "keep (weekly counts 7 days, monthly 31)"
            ),
            field_path=".maxAgeDays",
            check=_max_age_covers_counts,
        ),
    )

    keep_last: StrictInt | None = Field(
        None, ge=1, le=1000, description="Keep the newest N backups."
    )
    daily: StrictInt | None = Field(
        None, ge=0, le=366, description="Keep the newest backup of N days."
    )
    weekly: StrictInt | None = Field(None, ge=0, le=260, description="Keep the newest of N weeks.")
    monthly: StrictInt | None = Field(
        None, ge=0, le=120, description="Keep the newest of N months."
    )
    max_age_days: StrictInt | None = Field(
        None, ge=1, le=3650, description="Delete backups older than this (other rules permitting)."
    )


# The archive_timeout PostgreSQL gets when the policy names none: a committed
# row is in the archive within about this long, even on a quiet database.
DEFAULT_ARCHIVE_TIMEOUT_SECONDS = 60


# Namespaces whose new tenants may be made from a policy's backups (a set).
RestoreNamespaces = Annotated[list[DNSLabel], Field(max_length=50), AfterValidator(unique())]


class ContinuousArchiving(SpecModel):
    """WAL archiving of the tenant's primary to the policy's bucket, through pgBackRest.

    Beside the logical dumps (``targets``), not instead of them: the dumps stay
    runs under ``<prefix>/<tenant>/<run-id>/``, and the archive is a pgBackRest
    repository under ``<prefix>/_pgbackrest/<tenant>/<incarnation>/``, one per
    incarnation of the database, so WAL of an older incarnation can never mix
    with a later one's. Turning it on (or changing it) restarts the primary:
    PostgreSQL reads archive_mode only at its start.
    """

    archive_timeout_seconds: StrictInt = Field(
        DEFAULT_ARCHIVE_TIMEOUT_SECONDS, ge=10, le=3600,
        description=(
            "PostgreSQL's archive_timeout: the most a committed change waits before its WAL "
            "segment is archived. Default: 60."
        ),
    )
    repository_cipher_secret_ref: SecretKeyRef = Field(
        description=(
            "Secret key holding pgBackRest's repository passphrase (aes-256-cbc), on top of "
            "the bucket's own encryption. Keep it safe: nothing archived can be read without it."
        ),
    )
    allowed_restore_namespaces: RestoreNamespaces = Field(
        default_factory=list,
        description=(
            "Namespaces whose new tenants may be created from this archive "
            "(StackForgeTenant spec.bootstrap.recovery). Each such tenant gets copies of "
            "the bucket's keys and the repository's passphrase until its restore is done. "
            "Default: none."
        ),
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


class PhysicalRetention(SpecModel):
    """Which full physical backups pgBackRest keeps (with everything they need).

    pgBackRest's own expiry, after every backup: a differential or incremental
    backup goes with the full one it depends on, and WAL older than the oldest
    kept backup goes too, so whatever is kept stays restorable up to the newest
    archived segment.
    """

    cel_rules = (
        Rule(
            cel="has(self.fullCount) != has(self.fullDays)",
            message="physicalBackups.retention needs exactly one of fullCount and fullDays",
            check=lambda r: (r.full_count is None) != (r.full_days is None),
        ),
    )

    full_count: StrictInt | None = Field(
        None, ge=1, le=100, description="Keep the newest N full backups."
    )
    full_days: StrictInt | None = Field(
        None, ge=1, le=3650,
        description=(
            "Keep every full backup needed to restore to any moment of the last N days "
            "(the newest full backup older than that stays too)."
        ),
    )


class PhysicalBackups(SpecModel):
    """pgBackRest backups of the primary's data directory, the base of a point-in-time restore.

    They go to the WAL archive's repository (``continuousArchiving`` is
    required); each schedule fires in the policy's time zone. A backup due at a
    fire time is satisfied by any backup of at least that kind (a full one
    counts as differential and incremental too) finished since. While the
    repository has no full backup yet, one is taken at once.
    """

    full_schedule: Cron = Field(description="Cron schedule of full backups, e.g. '0 1 * * 0'.")
    differential_schedule: Cron | None = Field(
        None, description="Cron schedule of differential backups (changes since the last full)."
    )
    incremental_schedule: Cron | None = Field(
        None, description="Cron schedule of incremental backups (changes since the last backup)."
    )
    retention: PhysicalRetention = Field(description="Which full backups to keep.")


class BackupPolicySpec(SpecModel):
    """Desired backups of one tenant."""

    cel_rules = (
        Rule(
            cel=(
                "!has(self.targets) || !self.targets.exists(t, t == 'GrafanaDashboards') || "
                "has(self.grafana)"
            ),
            message="grafana is required when targets include GrafanaDashboards",
            field_path=".grafana",
            reason="FieldValueRequired",
            check=lambda s: (
                BackupTarget.GRAFANA_DASHBOARDS not in s.targets or s.grafana is not None
            ),
        ),
        Rule(
            cel=(
                "!has(self.continuousArchiving) || !has(self.storage.endpoint) || "
                "self.storage.endpoint.startsWith('https://')"
            ),
            message=(
                "continuousArchiving needs an https storage.endpoint: pgBackRest speaks S3 "
                "over HTTPS only"
            ),
            field_path=".storage.endpoint",
            check=lambda s: (
                s.continuous_archiving is None or s.storage.endpoint is None
                or s.storage.endpoint.startswith("https://")
            ),
        ),
        Rule(
            cel="!has(self.physicalBackups) || has(self.continuousArchiving)",
            message=(
                "physicalBackups needs continuousArchiving: a physical backup is restorable "
                "only with the WAL archived during it"
            ),
            field_path=".physicalBackups",
            check=lambda s: s.physical_backups is None or s.continuous_archiving is not None,
        ),
        Rule(
            cel="self.tenantRef == oldSelf.tenantRef",
            message="tenantRef is immutable: create another BackupPolicy for another tenant",
            field_path=".tenantRef",
            check_update=lambda old, new: old.tenant_ref == new.tenant_ref,
        ),
    )

    tenant_ref: LocalObjectRef = Field(description="The StackForgeTenant to back up. Immutable.")
    schedule: Cron | None = Field(
        None, description="Cron schedule. Default: the tenant's spec.backup.schedule (02:00)."
    )
    time_zone: TimeZone | None = Field(
        None, description="IANA time zone of the schedule. Default: the tenant's, else Etc/UTC."
    )
    suspend: StrictBool = Field(
        False, description="Skip scheduled runs (on-demand runs still work)."
    )
    targets: Annotated[
        list[BackupTarget],
        Field(min_length=1, max_length=3),
        AfterValidator(unique()),
        ServerDefault([t.value for t in DEFAULT_TARGETS]),
    ] = Field(
        default_factory=lambda: list(DEFAULT_TARGETS),
        description="What to save: Postgres, Configuration, GrafanaDashboards.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    grafana: GrafanaSource | None = Field(None, description="Grafana to export dashboards from.")
    dump_compression: DumpCompression = Field(
        DumpCompression.GZIP,
        description=(
            "Compression of the PostgreSQL dump. Gzip: pg_dump's own, in its one thread "
            "(postgres.dump). Zstd: an uncompressed archive compressed by the runner "
            "while it streams, several times faster (postgres.dump.zst; by "
            "hand: zstd -dc | pg_restore). Drills and restores read both. Default: Gzip."
        ),
    )
    storage: ObjectStorage = Field(description="Object storage for the backups.")
    retention: Retention = Field(description="Which backups to keep.")
    active_deadline_seconds: StrictInt | None = Field(
        None, ge=60, le=86400, description="Fail a run that takes longer. Default: 6 hours."
    )
    continuous_archiving: ContinuousArchiving | None = Field(
        None,
        description=(
            "Archive every WAL segment of the tenant's primary (pgBackRest). Default: off. "
            "One policy of a tenant archives; another one asking too is refused."
        ),
    )
    physical_backups: PhysicalBackups | None = Field(
        None,
        description=(
            "Full, differential and incremental pgBackRest backups into the WAL archive's "
            "repository, on their own schedules. Needs continuousArchiving. Default: none."
        ),
    )
    allowed_dump_restore_namespaces: RestoreNamespaces = Field(
        default_factory=list,
        description=(
            "Namespaces whose new tenants may be created from this policy's PostgreSQL dumps "
            "(StackForgeTenant spec.bootstrap.logical). Each such tenant gets a copy of the "
            "bucket's keys until its restore is done. Default: none."
        ),
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


# --------------------------------------------------------------------------- status


class RunResult(enum.StrEnum):
    """Outcome of a backup run."""

    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Artifact(StatusModel):
    """One object a run uploaded."""

    name: str = Field(max_length=64, description="Artifact name: postgres, configuration, grafana.")
    key: str = Field(max_length=1024, description="Object key in the bucket.")
    size_bytes: int = Field(ge=0, description="Size in bytes.")
    sha256: str = Field(max_length=64, description="Hex SHA-256 of the object.")


class BackupRun(StatusModel):
    """One backup run, as recorded by its manifest in object storage."""

    id: str = Field(max_length=128, description="Run id (also the object key segment).")
    result: RunResult = Field(description="Running, Succeeded or Failed.")
    reason: str | None = Field(None, max_length=128, description="CamelCase failure reason.")
    message: str | None = Field(None, max_length=4096, description="Failure details.")
    start_time: datetime | None = Field(None, description="When the run started.")
    completion_time: datetime | None = Field(None, description="When the run finished.")
    size_bytes: int | None = Field(None, ge=0, description="Total size of the artifacts.")
    sha256: str | None = Field(None, max_length=64, description="Hex SHA-256 of the database dump.")
    location: str | None = Field(None, max_length=2048, description="s3:// URL of the run.")
    job_name: str | None = Field(None, max_length=253, description="Job that ran it.")
    postgres_version: str | None = Field(None, max_length=32, description="Server version dumped.")
    artifacts: Annotated[list[Artifact], Field(max_length=8)] = Field(
        default_factory=list, description="Uploaded objects."
    )


class ArchiveStatus(StatusModel):
    """What the policy's WAL archive holds, as read from the bucket."""

    repository_path: str | None = Field(
        None, max_length=1024, description="The pgBackRest repository (repo1-path) in use."
    )
    last_archived_wal: str | None = Field(
        None, max_length=64, description="Name of the newest WAL segment in the archive."
    )
    last_archived_time: datetime | None = Field(
        None, description="When the newest WAL segment reached the archive."
    )
    last_archived_key: str | None = Field(
        None, max_length=2048, description="Its object key (listing resumes after it)."
    )
    archived_through: datetime | None = Field(
        None,
        description="The newest moment the primary reports archived: its newest heartbeat in "
        "a WAL segment PostgreSQL has archived. Bounds the recoverability window's last point.",
    )


class PhysicalBackupType(enum.StrEnum):
    """pgBackRest's kinds of backup, by what they copy."""

    FULL = "full"
    DIFFERENTIAL = "diff"  # what changed since the last full backup
    INCREMENTAL = "incr"  # what changed since the last backup of any kind


class PhysicalBackup(StatusModel):
    """One complete pgBackRest backup in the repository."""

    label: str = Field(max_length=64, description="pgBackRest's label, e.g. 20261130-220000F.")
    type: PhysicalBackupType = Field(description="full, diff or incr.")
    start_time: datetime | None = Field(None, description="When it started (from its label).")
    stop_time: datetime = Field(
        description="When it was complete: the earliest moment it restores to."
    )


class PhysicalBackupRequest(StatusModel):
    """A backup the operator asked the primary's archiver for, not in the repository yet."""

    id: str = Field(max_length=32, description="The request's id: its time, UTC.")
    type: PhysicalBackupType = Field(description="full, diff or incr.")
    pod: str = Field(max_length=253, description="The primary pod asked.")
    waiting_since: datetime | None = Field(
        None, description=("When the oldest request still unanswered was asked: a later "
                           "schedule's request replaces one that never completed, and the "
                           "deadline counts from the first (BackupOverdue)."))
    retention: str | None = Field(
        None, max_length=32, pattern=r"^(count|time) [0-9]+$",
        description=("The retention pgBackRest expires by after this backup, as the request "
                     "carries it ('count 2', 'time 30'): the policy's when it was asked."))


class RecoverabilityWindow(StatusModel):
    """The moments a point-in-time restore can reach, as read from the repository."""

    first_point: datetime = Field(description="The end of the oldest complete backup.")
    last_point: datetime = Field(
        description=(
            "One archive_timeout before the newest archived segment reached the bucket: "
            "the archiver commits a record twice per timeout, so one later than this is "
            "archived."
        ),
    )


class PhysicalBackupsStatus(StatusModel):
    """The physical backups of the archive's current repository."""

    backups: Annotated[list[PhysicalBackup], Field(max_length=400)] = Field(
        default_factory=list, description="Complete backups, oldest first."
    )
    pending_request: PhysicalBackupRequest | None = Field(
        None, description="The backup asked for and not complete yet."
    )
    recoverability_window: RecoverabilityWindow | None = Field(
        None, description="First and last moment a restore can reach (none before a backup)."
    )
    last_request: str | None = Field(
        None, max_length=64,
        description=("The newest request a backup answered, as the primary's archiver read "
                     "it ('<id> <type> <count|time> <n>'): the retention pgBackRest expired "
                     "by after that backup."))
    held_request: str | None = Field(
        None, max_length=1024,
        description=("Why the physical backup due is not asked for yet: pgBackRest's expiry "
                     "after it would remove the full backup a running restore (a drill, a "
                     "clone, an in-place recovery) starts from."))
    held_since: datetime | None = Field(
        None, description=("Since when restores have held the backup due: it is asked for "
                           "anyway once held longer than activeDeadlineSeconds."))


class BackupPolicyStatus(StatusModel):
    """Observed state of a BackupPolicy."""

    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation this status describes."
    )
    conditions: Conditions = condition_list_field()
    schedule: str | None = Field(None, max_length=100, description="Schedule in effect.")
    time_zone: str | None = Field(None, max_length=64, description="Time zone in effect.")
    cron_job_name: str | None = Field(None, max_length=253, description="CronJob running it.")
    last_schedule_time: datetime | None = Field(None, description="Last scheduled run time.")
    next_schedule_time: datetime | None = Field(None, description="Next scheduled run time.")
    active_run: BackupRun | None = Field(None, description="Run in progress.")
    last_run: BackupRun | None = Field(None, description="Newest finished run.")
    last_successful_run: BackupRun | None = Field(None, description="Newest complete backup.")
    continuous_archiving: ArchiveStatus | None = Field(
        None, description="The WAL archive, when spec.continuousArchiving is set."
    )
    physical_backups: PhysicalBackupsStatus | None = Field(
        None, description="Physical backups, when spec.physicalBackups is set."
    )
