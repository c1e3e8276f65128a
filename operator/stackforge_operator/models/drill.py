"""DRDrill: restore a tenant's backup into a throw-away sandbox and grade it.

Namespaced, normally in the tenant's namespace.  Unset schedule and
objectives fall back to the tenant's ``spec.drill`` and then to the tier.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field, StrictBool, StrictInt

from stackforge_operator.models.cel import Rule, ServerDefault
from stackforge_operator.models.common import (
    Conditions,
    Cron,
    DNSLabel,
    LocalObjectRef,
    ResourceRequirements,
    RunId,
    SpecModel,
    StatusModel,
    TimeZone,
    condition_list_field,
    list_map,
    unique,
)

DEFAULT_HISTORY_LIMIT = 10
DEFAULT_SANDBOX_TTL_SECONDS = 3600


class BackupMethod(enum.StrEnum):
    """What a drill restores."""

    LOGICAL = "Logical"  # a dump of the policy's backup runs, through pg_restore
    PHYSICAL = "Physical"  # a pgBackRest backup and the archived WAL after it


class BackupSource(enum.StrEnum):
    """How the backup to restore is chosen."""

    LATEST = "Latest"  # the newest complete dump; Physical: the last archived moment
    BY_ID = "ById"  # the run named by backup.id (Logical only)
    # Logical: the newest complete dump before backup.pointInTime; Physical:
    # the database exactly as it was then.
    POINT_IN_TIME = "PointInTime"


class BackupSelector(SpecModel):
    """Which backup a drill restores."""

    cel_rules = (
        Rule(
            cel="has(self.id) == (has(self.source) && self.source == 'ById')",
            message="backup.id is required with source ById and not allowed otherwise",
            field_path=".id",
            check=lambda b: (b.id is not None) == (b.source == BackupSource.BY_ID),
        ),
        Rule(
            cel="has(self.pointInTime) == (has(self.source) && self.source == 'PointInTime')",
            message=(
                "backup.pointInTime is required with source PointInTime and not allowed otherwise"
            ),
            field_path=".pointInTime",
            check=lambda b: (
                (b.point_in_time is not None) == (b.source == BackupSource.POINT_IN_TIME)
            ),
        ),
        Rule(
            cel="!(has(self.method) && self.method == 'Physical' "
                "&& has(self.source) && self.source == 'ById')",
            message="backup.source ById names a logical backup run: a Physical restore "
            "takes Latest or PointInTime",
            field_path=".source",
            check=lambda b: not (b.method == BackupMethod.PHYSICAL
                                 and b.source == BackupSource.BY_ID),
        ),
    )

    method: BackupMethod = Field(
        BackupMethod.LOGICAL,
        description=(
            "Logical: a dump of the policy's backup runs, restored with pg_restore. "
            "Physical: the policy's pgBackRest backups and archived WAL (it needs "
            "continuousArchiving and physicalBackups), restored to a moment of the "
            "policy's recoverability window. Default: Logical."
        ),
    )
    source: BackupSource = Field(
        BackupSource.LATEST,
        description=(
            "Latest, ById or PointInTime. Default: Latest (Physical: the last archived "
            "moment)."
        ),
    )
    id: RunId | None = Field(
        None, description="Backup run id (source ById), e.g. 20261127T020000Z-3fa9c1.")
    point_in_time: datetime | None = Field(
        None,
        description=(
            "RFC 3339 time (source PointInTime). Logical: the newest dump finished before "
            "it is restored. Physical: the database as it was at that moment, every "
            "transaction committed at or before it and none after; a moment outside the "
            "recoverability window is refused before the run starts."
        ),
    )


class Objectives(SpecModel):
    """Recovery objectives the drill is graded against."""

    rto_seconds: StrictInt | None = Field(
        None,
        gt=0,
        le=604800,
        description="Recovery time objective: drill start to verified restore, in seconds.",
    )
    rpo_seconds: StrictInt | None = Field(
        None,
        gt=0,
        le=7776000,
        description="Recovery point objective: maximum age of the restored data, in seconds.",
    )


class QueryCheck(SpecModel):
    """A SQL query run against the restored database, with its expected result."""

    cel_rules = (
        Rule(
            cel="has(self.expectedRows) != has(self.expectedValue)",
            message="query check must set exactly one of expectedRows or expectedValue",
            check=lambda q: (q.expected_rows is None) != (q.expected_value is None),
        ),
    )

    name: DNSLabel = Field(description="Name of the check, unique within the drill.")
    database: Annotated[str, Field(max_length=63, pattern=r"^[a-z_][a-z0-9_]*$")] | None = Field(
        None, description="Database to query. Default: the tenant's application database."
    )
    sql: Annotated[str, Field(min_length=1, max_length=4096)] = Field(
        description="A read-only query."
    )
    expected_rows: StrictInt | None = Field(
        None, ge=0, description="Expected number of result rows."
    )
    expected_value: Annotated[str, Field(max_length=1024)] | None = Field(
        None, description="Expected value of the first column of the first row, as text."
    )


class Checks(SpecModel):
    """Verification of the restored data."""

    row_counts: StrictBool = Field(
        True,
        description=(
            "Compare every table's row count with the backup manifest (Logical only: a "
            "physical backup has no manifest of rows)."
        ),
    )
    checksum: StrictBool = Field(
        True,
        description=(
            "Verify the dump's SHA-256 against the manifest (Logical only: pgBackRest "
            "checks every file it restores itself)."
        ),
    )
    queries: Annotated[list[QueryCheck], Field(max_length=20), AfterValidator(unique("name"))] = (
        Field(
            default_factory=list,
            description="SQL checks, unique by name.",
            json_schema_extra=list_map("name"),
        )
    )


class Sandbox(SpecModel):
    """The throw-away namespace a drill restores into."""

    ttl_seconds: StrictInt = Field(
        DEFAULT_SANDBOX_TTL_SECONDS,
        ge=60,
        le=604800,
        description="Delete the sandbox this long after the run started, whatever happened.",
    )
    keep_on_failure: StrictBool = Field(
        False, description="Keep a failed run's sandbox (until ttlSeconds) for inspection."
    )
    storage_class_name: DNSLabel | None = Field(
        None,
        description=(
            "StorageClass of the scratch database's data: a volume of the tenant's database "
            "size, made with the pod and deleted with it. Default: the node's own disk (the "
            "container's writable layer: the pod then has no volume, which the kubelet starts "
            "sooner)."
        ),
    )
    resources: ResourceRequirements | None = Field(
        None,
        description=(
            "Resources of the scratch database's server. Default: none (best effort: it "
            "takes what the node has spare, and is the first to go under pressure)."
        ),
    )


class DRDrillSpec(SpecModel):
    """Desired disaster-recovery drills of one tenant."""

    cel_rules = (
        Rule(
            cel="!(has(self.once) && self.once && has(self.schedule))",
            message="once and schedule are mutually exclusive",
            field_path=".schedule",
            check=lambda s: not (s.once and s.schedule is not None),
        ),
        Rule(
            cel="self.tenantRef == oldSelf.tenantRef",
            message="tenantRef is immutable: create another DRDrill for another tenant",
            field_path=".tenantRef",
            check_update=lambda old, new: old.tenant_ref == new.tenant_ref,
        ),
    )

    tenant_ref: LocalObjectRef = Field(description="The StackForgeTenant to drill. Immutable.")
    backup_policy_ref: LocalObjectRef | None = Field(
        None, description="BackupPolicy whose backups are used. Default: the tenant's only one."
    )
    backup: BackupSelector = Field(
        default_factory=BackupSelector, description="Which backup to restore."
    )
    once: StrictBool = Field(
        False, description="Run a single drill when created and never again (no schedule)."
    )
    schedule: Cron | None = Field(
        None, description="Cron schedule. Default: the tenant's drill cadence (tier: monthly)."
    )
    time_zone: TimeZone | None = Field(None, description="IANA time zone of the schedule.")
    objectives: Objectives | None = Field(
        None, description="RTO/RPO to meet. Default: the tenant's, else the tier's."
    )
    checks: Checks = Field(default_factory=Checks, description="What to verify.")
    sandbox: Sandbox = Field(default_factory=Sandbox, description="Sandbox settings.")
    history_limit: Annotated[StrictInt, ServerDefault(DEFAULT_HISTORY_LIMIT)] = Field(
        DEFAULT_HISTORY_LIMIT, ge=1, le=50, description="Finished runs kept in status.history."
    )
    suspend: StrictBool = Field(
        False, description="Start no run while set, not even the first one a new drill "
        "makes; a run already going finishes.")


# --------------------------------------------------------------------------- status


class Verdict(enum.StrEnum):
    """A drill's verdict."""

    PASSED = "Passed"
    FAILED = "Failed"


class DrillPhase(enum.StrEnum):
    """Where the drill stands."""

    PENDING = "Pending"  # no run yet
    RUNNING = "Running"
    PASSED = "Passed"  # the last run passed
    FAILED = "Failed"  # the last run failed


class DrillStep(enum.StrEnum):
    """Step of the active run."""

    SELECTING_BACKUP = "SelectingBackup"
    CREATING_SANDBOX = "CreatingSandbox"
    RESTORING = "Restoring"
    VERIFYING = "Verifying"
    CLEANING_UP = "CleaningUp"


class CheckKind(enum.StrEnum):
    """Kind of verification check."""

    ROW_COUNT = "RowCount"
    QUERY = "Query"
    CHECKSUM = "Checksum"
    CONNECTIVITY = "Connectivity"
    RECOVERY = "Recovery"  # a physical restore ended promoted, at its target
    ROLES = "Roles"  # a restore keeping owners: the roles the dump names exist


class CheckResult(StatusModel):
    """Outcome of one check."""

    name: str = Field(max_length=253, description="Check name (table name for row counts).")
    kind: CheckKind = Field(
        description="RowCount, Query, Checksum, Connectivity or Recovery."
    )
    passed: bool = Field(description="The check passed.")
    expected: str | None = Field(None, max_length=1024, description="Expected value, as text.")
    actual: str | None = Field(None, max_length=1024, description="Observed value, as text.")
    message: str | None = Field(None, max_length=1024, description="Details.")


class ActiveDrillRun(StatusModel):
    """The run in progress."""

    run_id: str = Field(max_length=128, description="Run identifier.")
    start_time: datetime = Field(description="When the run started (RTO is measured from here).")
    step: DrillStep = Field(description="Current step.")
    backup_id: str | None = Field(None, max_length=128, description="Backup being restored.")
    recovery_target: str | None = Field(
        None, max_length=64,
        description="Physical: the moment restored to (RFC 3339), or latest.",
    )
    repository_path: str | None = Field(
        None, max_length=1024,
        description="Physical: the pgBackRest repository restored from, fixed at the start.",
    )
    sandbox_namespace: str | None = Field(None, max_length=63, description="Sandbox namespace.")
    job_name: str | None = Field(None, max_length=253, description="Restore Job.")


class DrillRunSummary(StatusModel):
    """A finished run, as kept in the bounded history."""

    run_id: str = Field(max_length=128, description="Run identifier.")
    verdict: Verdict = Field(description="Passed or Failed.")
    reason: str | None = Field(None, max_length=128, description="CamelCase reason of a failure.")
    start_time: datetime | None = Field(None, description="When the run started.")
    completion_time: datetime | None = Field(None, description="When the run finished.")
    backup_id: str | None = Field(None, max_length=128, description="Backup restored.")
    rto_seconds: int | None = Field(None, ge=0, description="Measured RTO in seconds.")
    rpo_seconds: int | None = Field(None, ge=0, description="Measured RPO in seconds.")


class DrillResult(DrillRunSummary):
    """The newest finished run in full."""

    message: str | None = Field(None, max_length=4096, description="Human-readable verdict.")
    backup_location: str | None = Field(None, max_length=2048, description="s3:// URL restored.")
    recovery_target: str | None = Field(
        None, max_length=64,
        description="Physical: the moment restored to (RFC 3339), or latest.",
    )
    recovery_point_time: datetime | None = Field(
        None,
        description=(
            "When the restored data is from: the dump's snapshot; Physical: the last "
            "transaction replayed."
        ),
    )
    rto_objective_seconds: int | None = Field(None, ge=0, description="RTO objective applied.")
    rpo_objective_seconds: int | None = Field(None, ge=0, description="RPO objective applied.")
    rto_met: bool | None = Field(None, description="Measured RTO within the objective.")
    rpo_met: bool | None = Field(None, description="Measured RPO within the objective.")
    checks: Annotated[list[CheckResult], Field(max_length=512)] = Field(
        default_factory=list, description="Outcome of every check."
    )
    report_location: str | None = Field(
        None, max_length=2048, description="s3:// URL of the JSON report."
    )
    restore_log_tail: str | None = Field(
        None, max_length=4096, description="Last lines of pg_restore's stderr on failure."
    )


class DRDrillStatus(StatusModel):
    """Observed state of a DRDrill."""

    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation this status describes."
    )
    conditions: Conditions = condition_list_field()
    phase: DrillPhase | None = Field(None, description="Pending, Running, Passed or Failed.")
    active_run: ActiveDrillRun | None = Field(None, description="Run in progress.")
    last_result: DrillResult | None = Field(None, description="Newest finished run.")
    history: Annotated[list[DrillRunSummary], Field(max_length=50)] = Field(
        default_factory=list, description="Finished runs, newest first, at most spec.historyLimit."
    )
    last_schedule_time: datetime | None = Field(None, description="Last scheduled run time.")
    next_schedule_time: datetime | None = Field(None, description="Next scheduled run time.")
