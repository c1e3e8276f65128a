"""One backup run, as a Job's pod executes it: dump, upload, verify, then the manifest.

The order is the guarantee:

1. check the bucket (fail in seconds when S3 is unreachable or refuses us);
2. open a snapshot in the database and count rows in it (fail before any
   upload when the database is unreachable);
3. upload the configuration and Grafana dashboards, if asked for;
4. stream ``pg_dump -Fc`` in that snapshot into a multipart upload, hashing on
   the way, and complete the upload only after pg_dump exited 0;
5. write ``manifest.json`` last.

Any failure before 5 aborts the open upload, removes what this run had
uploaded (best effort; retention collects the rest later), and leaves every
other run alone.  No manifest, no backup.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from stackforge_operator import runner_process
from stackforge_operator.backup.dump_format import (
    DumpCompression,
    compressed,
    dump_format,
    dump_name,
    pg_dump_level,
)
from stackforge_operator.backup.failures import BackupFailure, redact, s3_failure, secret_values
from stackforge_operator.backup.grafana import export_dashboards
from stackforge_operator.backup.manifest import Manifest, ManifestArtifact, PostgresInfo
from stackforge_operator.backup.postgres import (
    PgDump,
    SnapshotInfo,
    SnapshotSession,
    find_tool,
    tool_version,
)
from stackforge_operator.backup.runid import new_run_id, run_started_at
from stackforge_operator.backup.store import (
    DEFAULT_PART_SIZE,
    DEFAULT_PARTS_IN_FLIGHT,
    BackupStore,
    MultipartUpload,
    StoreConfig,
    TooLarge,
    UploadResult,
)
from stackforge_operator.models.backup import BackupTarget
from stackforge_operator.version import VERSION

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("stackforge_operator.backup")

CONFIGURATION_NAME = "configuration.json"
GRAFANA_NAME = "grafana-dashboards.json"
DEFAULT_LOCK_TIMEOUT_MS = 10 * 60 * 1000
# Between tries at a database that refused or did not answer (--connect-wait-seconds).
CONNECT_RETRY_SECONDS = 2.0
# Tenants are Kubernetes object names; the name is also a key segment.
_TENANT_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class BackupRequest:
    """What to back up and where; secrets are not here (they stay in the environment)."""

    tenant: str
    store: StoreConfig
    run_id: str | None = None
    targets: frozenset[BackupTarget] = frozenset({BackupTarget.POSTGRES})
    configuration_file: Path | None = None
    grafana_url: str | None = None
    pg_bin_dir: Path | None = None
    part_size: int = DEFAULT_PART_SIZE
    parts_in_flight: int = DEFAULT_PARTS_IN_FLIGHT
    lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS
    compress: int | None = None
    compression: DumpCompression = DumpCompression.GZIP
    # How long a database that refuses or does not answer the first connection is
    # asked again before the run fails DatabaseUnreachable (0: fail at once).
    connect_wait_seconds: float = 0.0


@dataclass
class RunOutcome:
    """The run's result; ``to_json_line`` is what the pod prints for the operator."""

    result: str  # Succeeded | Failed
    tenant: str
    run_id: str
    reason: str | None = None
    message: str | None = None
    manifest: Manifest | None = None
    manifest_key: str | None = None
    already_complete: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.result == "Succeeded"

    def to_json_line(self) -> str:
        data: dict[str, Any] = {"result": self.result, "tenant": self.tenant, "runId": self.run_id}
        if self.reason:
            data["reason"] = self.reason
        if self.message:
            data["message"] = self.message
        if self.manifest is not None:
            dump = self.manifest.artifact("postgres")
            data.update(
                location=self.manifest.location,
                manifestKey=self.manifest_key,
                sizeBytes=self.manifest.size_bytes,
                sha256=dump.sha256 if dump else None,
                startedAt=self.manifest.started_at.isoformat(),
                finishedAt=self.manifest.finished_at.isoformat(),
            )
        if self.already_complete:
            data["alreadyComplete"] = True
        data.update(self.extra)
        data["peakRssBytes"] = peak_rss_bytes()
        return json.dumps(data, separators=(",", ":"))


def parse_result(text: str) -> dict[str, Any] | None:
    """The runner's result from a termination message or a log tail, if there is one."""
    return runner_process.find_result_line(
        text, lambda data: data.get("result") in ("Succeeded", "Failed"))


def peak_rss_bytes() -> int:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _Stage:
    """What the run is doing, for the failure message."""

    def __init__(self) -> None:
        self.doing = "starting"

    def __call__(self, doing: str) -> None:
        self.doing = doing
        log.info("%s", doing)


def run_backup(
    request: BackupRequest,
    *,
    env: Mapping[str, str] | None = None,
    client: S3Client | None = None,
) -> RunOutcome:
    """Run one backup; never raises for a failure of the run, returns it instead.

    ``env`` is what pg_dump and psql get (libpq reads PGHOST, PGPORT, PGUSER,
    PGPASSWORD, PGDATABASE from it; default: ours) and where GRAFANA_TOKEN is
    read. boto3 takes its credentials from this process's environment or
    ambient identity, or use ``client`` to pass a ready S3 client.
    """
    env = dict(os.environ if env is None else env)
    started = datetime.now(UTC)
    run_id = request.run_id or new_run_id(started)
    stage = _Stage()
    store = BackupStore(request.store, client)
    run = _Run(request, store, env, run_id, started, stage)
    try:
        return run.execute()
    except BackupFailure as exc:
        failure = exc
    except (ClientError, BotoCoreError) as exc:
        failure = s3_failure(exc, stage.doing)
    except TooLarge as exc:
        failure = BackupFailure("DumpTooLarge", str(exc))
    except KeyboardInterrupt:
        failure = BackupFailure("Interrupted", f"interrupted while {stage.doing}")
    except Exception as exc:  # reported, not swallowed: the run fails with it
        failure = BackupFailure("InternalError", f"{stage.doing}: {type(exc).__name__}: {exc}")
    run.clean_up()
    secrets = secret_values(
        [env.get(name, "") for name in ("AWS_SECRET_ACCESS_KEY", "PGPASSWORD", "GRAFANA_TOKEN")]
    )
    return RunOutcome(
        "Failed", request.tenant, run_id, failure.reason, redact(failure.message, secrets)
    )


class _Run:
    def __init__(
        self,
        request: BackupRequest,
        store: BackupStore,
        env: dict[str, str],
        run_id: str,
        started: datetime,
        stage: _Stage,
    ) -> None:
        self.request = request
        self.store = store
        self.env = env
        self.run_id = run_id
        self.started = started
        self.stage = stage
        self.prefix = store.config.run_prefix(request.tenant, run_id)
        self.uploaded: list[str] = []
        self.upload: MultipartUpload | None = None
        self.dump: PgDump | None = None
        self.session: SnapshotSession | None = None
        self.row_counts: dict[str, int] = {}

    def execute(self) -> RunOutcome:
        request = self.request
        if not _TENANT_RE.match(request.tenant):
            raise BackupFailure(
                "InvalidArguments", f"tenant {request.tenant!r} is not a DNS-1123 label"
            )
        if run_started_at(self.run_id) is None:
            raise BackupFailure(
                "InvalidRunId", f"{self.run_id!r} is not YYYYMMDDTHHMMSSZ-<suffix>"
            )
        self.stage(f"checking s3://{self.store.bucket}/{self.prefix}")
        existing = self._existing_manifest()
        if existing is not None:
            return RunOutcome(
                "Succeeded", request.tenant, self.run_id, manifest=existing,
                manifest_key=self.store.manifest_key(request.tenant, self.run_id),
                already_complete=True,
            )
        artifacts: list[ManifestArtifact] = []
        postgres: PostgresInfo | None = None
        tools = {"stackforge-operator": VERSION, "python": platform.python_version(),
                 "boto3": boto3.__version__}

        if BackupTarget.POSTGRES in request.targets:
            pg_dump = find_tool("pg_dump", request.pg_bin_dir)
            psql = find_tool("psql", request.pg_bin_dir)
            tools["pg_dump"] = tool_version(pg_dump)
            self.stage("opening a snapshot of the database")
            info = self._open_session(psql)
            log.info("database %s, PostgreSQL %s", info.database, info.server_version)

        artifacts.extend(self._small_artifacts())

        if BackupTarget.POSTGRES in request.targets:
            assert self.session is not None
            artifacts.append(self._dump(pg_dump, info.snapshot))
            postgres = PostgresInfo(
                server_version=info.server_version,
                server_version_num=info.server_version_num,
                database=info.database,
                row_counts=self.row_counts,
                snapshot_time=info.snapshot_time,
                roles=list(info.roles),
                system_identifier=info.system_identifier,
            )
            self.session.close()

        finished = datetime.now(UTC)
        manifest = Manifest(
            tenant=request.tenant,
            run_id=self.run_id,
            bucket=self.store.bucket,
            prefix=self.prefix.rstrip("/"),
            started_at=self.started,
            finished_at=finished,
            artifacts=artifacts,
            postgres=postgres,
            server_side_encryption=self.store.config.sse.value if self.store.config.sse else None,
            tools=tools,
        )
        self.stage("writing the manifest")
        key = self.store.write_manifest(manifest)
        log.info("backup complete: %s (%d bytes)", manifest.location, manifest.size_bytes)
        return RunOutcome("Succeeded", request.tenant, self.run_id, manifest=manifest,
                          manifest_key=key)

    def _open_session(self, psql: str) -> SnapshotInfo:
        """The snapshot session. A database that refuses or does not answer is asked
        again for ``connect_wait_seconds``: a run that starts while the primary fails
        over, or before the network policy enforcer has let the new runner pod in,
        is not a lost night. Any other failure (a password, a missing database)
        fails at once."""
        deadline = time.monotonic() + self.request.connect_wait_seconds
        while True:
            self.session = SnapshotSession(psql, self.env, self.request.lock_timeout_ms)
            try:
                return self.session.open()
            except BackupFailure as failure:
                left = deadline - time.monotonic()
                if failure.reason != "DatabaseUnreachable" or left <= 0:
                    raise
                self.session.close()
                log.warning("%s; asking again for up to %.0f s more",
                            redact(failure.message), left)
                time.sleep(min(CONNECT_RETRY_SECONDS, left))

    def _existing_manifest(self) -> Manifest | None:
        # Listing (not a GET of the manifest) because it also proves the
        # credentials and the bucket before anything is dumped.
        listing = self.store.client.list_objects_v2(
            Bucket=self.store.bucket, Prefix=self.prefix, MaxKeys=100
        )
        keys = {o["Key"] for o in listing.get("Contents", [])}
        if self.prefix + "manifest.json" in keys:
            return self.store.read_manifest(self.request.tenant, self.run_id)
        return None

    def _small_artifacts(self) -> list[ManifestArtifact]:
        request = self.request
        found = []
        if BackupTarget.CONFIGURATION in request.targets:
            if request.configuration_file is None:
                raise BackupFailure("ConfigurationMissing", "no --config-file given")
            self.stage("reading the tenant configuration")
            try:
                data = request.configuration_file.read_bytes()
                json.loads(data)
            except OSError as exc:
                raise BackupFailure("ConfigurationUnreadable", str(exc)) from exc
            except ValueError as exc:
                raise BackupFailure("ConfigurationInvalid", f"not JSON: {exc}") from exc
            found.append(self._put("configuration", CONFIGURATION_NAME, data))
        if BackupTarget.GRAFANA_DASHBOARDS in request.targets:
            if not request.grafana_url:
                raise BackupFailure("GrafanaMissing", "no --grafana-url given")
            self.stage(f"exporting Grafana dashboards from {request.grafana_url}")
            data = export_dashboards(request.grafana_url, self.env.get("GRAFANA_TOKEN"))
            found.append(self._put("grafana", GRAFANA_NAME, data))
        return found

    def _put(self, name: str, filename: str, data: bytes) -> ManifestArtifact:
        self.stage(f"uploading {filename}")
        key = self.prefix + filename
        self.uploaded.append(key)
        result = self.store.put_bytes(key, data, "application/json")
        return self._artifact(name, result, "application/json", "json")

    def _dump(self, pg_dump: str, snapshot: str) -> ManifestArtifact:
        request = self.request
        key = self.prefix + dump_name(request.compression)
        self.stage(f"streaming pg_dump ({request.compression}) into "
                   f"s3://{self.store.bucket}/{key}")
        self.upload = MultipartUpload(
            self.store.client, self.store.config, key,
            part_size=request.part_size, parts_in_flight=request.parts_in_flight,
        )
        self.upload.start()
        self.uploaded.append(key)
        self.dump = PgDump(pg_dump, self.env, snapshot=snapshot,
                           lock_timeout_ms=request.lock_timeout_ms,
                           compress=pg_dump_level(request.compression, request.compress))
        stream = self.dump.start()
        assert self.session is not None
        # Counted in pg_dump's snapshot while it streams: same rows, no extra wait.
        self.session.start_counting()
        self.upload.upload_from(compressed(stream, request.compression))
        stream.close()
        # Only a dump whose producer exited 0 is whole: check before completing.
        try:
            self.dump.wait()
        except BackupFailure as dump_failed:
            # pg_dump imports the snapshot the counting session exported: when that
            # session failed first (a table its role may not read, say), pg_dump's
            # "invalid snapshot identifier" would hide why.
            cause = self.session.failure("counting rows in the dump's snapshot")
            if cause is not None:
                raise cause from dump_failed
            raise
        self.stage("collecting the row counts")
        self.row_counts = self.session.row_counts()
        log.info("%d tables counted", len(self.row_counts))
        self.stage("completing the upload")
        result = self.upload.complete()
        self.upload = None
        stored = self.store.object_size(key)
        if stored != result.size_bytes:
            raise BackupFailure(
                "UploadVerificationFailed",
                f"{key}: stored {stored} bytes, streamed {result.size_bytes}",
            )
        log.info("dump uploaded: %d bytes in %d parts", result.size_bytes, result.parts)
        return self._artifact("postgres", result, "application/octet-stream",
                              dump_format(request.compression))

    @staticmethod
    def _artifact(
        name: str, result: UploadResult, content_type: str, fmt: str
    ) -> ManifestArtifact:
        return ManifestArtifact(
            name=name, key=result.key, size_bytes=result.size_bytes, sha256=result.sha256,
            content_type=content_type, format=fmt,
        )

    def clean_up(self) -> None:
        """After a failure: stop the children, abort the upload, drop this run's objects."""
        if self.dump is not None:
            self.dump.kill()
        if self.session is not None:
            self.session.abandon()
        if self.upload is not None:
            try:
                self.upload.abort()
            except (ClientError, BotoCoreError) as exc:
                log.warning("could not abort the upload (retention will): %s", exc)
        if self.uploaded:
            try:
                self.store.delete_run(self.request.tenant, self.run_id)
            except (ClientError, BotoCoreError, RuntimeError) as exc:
                log.warning("could not remove this run's objects (retention will): %s", exc)
