"""``manifest.json``: the record that turns a run's objects into a backup.

The runner writes it last, after every artifact is uploaded and checked, so
its presence is the commit point: a run without a manifest is incomplete and
never counts as a backup (the operator and retention both go by this).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from stackforge_operator.models.backup import Artifact, BackupRun, RunResult

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION: Literal[1] = 1


class _ManifestModel(BaseModel):
    # camelCase on the wire like the CRDs; unknown fields ignored so that an
    # older operator can still read a manifest written by a newer runner.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class ManifestArtifact(_ManifestModel):
    """One uploaded object, with what a restore needs to trust it."""

    name: str = Field(description="postgres, configuration or grafana.")
    key: str = Field(description="Object key in the bucket.")
    size_bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    content_type: str = "application/octet-stream"
    format: str | None = Field(None, description="e.g. pg_dump-custom, json.")

    def to_status(self) -> Artifact:
        return Artifact(
            name=self.name, key=self.key, size_bytes=self.size_bytes, sha256=self.sha256
        )


class PostgresInfo(_ManifestModel):
    """What was dumped, and what a restore check compares against."""

    server_version: str = Field(description="e.g. 15.18 (Debian 15.18-0+deb12u1).")
    server_version_num: int = Field(description="e.g. 150018.")
    database: str
    # Counted inside the same snapshot that pg_dump used, so a restore of this
    # dump must reproduce them exactly, however busy the database was.
    row_counts: dict[str, int] = Field(default_factory=dict, description="schema.table -> rows.")
    # When the dumped snapshot was taken: the data's real recovery point.
    # Older manifests lack it; a drill then falls back to ``finished_at``.
    snapshot_time: datetime | None = Field(None, description="When the snapshot was taken.")
    # The roles the dump's owners and grants name (the superuser among them):
    # a restore that keeps owners makes the missing ones. Older manifests lack it.
    roles: list[str] = Field(default_factory=list, description="Roles owning or granted objects.")
    # initdb's identifier of the dumped database (pg_control_system()): a dump of
    # another database than the backups before it (made afresh after a lost
    # volume, or a tenant made again under its name) is told apart, and
    # retention does not count it against them. Older manifests lack it.
    system_identifier: str | None = Field(
        None, description="The database's system identifier (pg_control_system()).")

    @property
    def short_version(self) -> str:
        return self.server_version.split(" ", 1)[0]


class Manifest(_ManifestModel):
    format_version: Literal[1] = FORMAT_VERSION
    tenant: str
    run_id: str
    bucket: str
    prefix: str = Field(description="Key prefix of the run, ending in the run id.")
    started_at: datetime
    finished_at: datetime
    artifacts: list[ManifestArtifact]
    postgres: PostgresInfo | None = None
    server_side_encryption: str | None = None
    tools: dict[str, str] = Field(default_factory=dict, description="tool -> version.")

    def artifact(self, name: str) -> ManifestArtifact | None:
        return next((a for a in self.artifacts if a.name == name), None)

    @property
    def size_bytes(self) -> int:
        return sum(a.size_bytes for a in self.artifacts)

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/"

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True, indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Manifest:
        return cls.model_validate_json(data)

    def to_backup_run(self, job_name: str | None = None) -> BackupRun:
        """The status record of this (complete, hence succeeded) run."""
        dump = self.artifact("postgres")
        return BackupRun(
            id=self.run_id,
            result=RunResult.SUCCEEDED,
            start_time=self.started_at,
            completion_time=self.finished_at,
            size_bytes=self.size_bytes,
            sha256=dump.sha256 if dump else None,
            location=self.location,
            job_name=job_name,
            postgres_version=self.postgres.short_version[:32] if self.postgres else None,
            artifacts=[a.to_status() for a in self.artifacts],
        )
