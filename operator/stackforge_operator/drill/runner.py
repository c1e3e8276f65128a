"""One DR drill, as a drill Job's pod executes it.

1. find the backup's manifest (``latest``, a run id, or ``before=<time>``);
2. stream its dump from S3 into ``pg_restore`` in the scratch database,
   hashing the bytes on the way (no temporary file: a drill of a 100 GiB
   backup must not need 100 GiB of disk);
3. compare the hash with the manifest's, whatever pg_restore said;
4. verify: the database answers, every table has the manifest's row count,
   every SQL check returns what it expects (logged in as a role that reads
   every table and nothing of the server's: check_login.py);
5. grade: RTO = verified-restore time - drill start, RPO = drill start -
   recovery point (the dump's snapshot time, else the backup's finish);
6. store the full report beside the backup, even for a failed drill.

A Physical drill (``PhysicalRecovery``) finds its database restored already:
the scratch pod restored it from the pgBackRest repository to the target
(images/postgres/stackforge-restore.sh) and is Ready only once promoted. Its
run is step 4 (with a Recovery check: promoted, nothing replayed past the
target) and 5, with RPO = target (or drill start, for the latest point) - the
last transaction replayed; the report goes under the tenant's ``drills/``.

Failures come back as a Failed outcome with a CamelCase reason, never as an
exception; only S3 being unreachable leaves no report behind.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from stackforge_operator.backup import dump_format
from stackforge_operator.backup.failures import BackupFailure, redact, s3_failure, secret_values
from stackforge_operator.backup.manifest import Manifest
from stackforge_operator.backup.postgres import find_tool, privileged_env, tool_version
from stackforge_operator.backup.runid import new_run_id
from stackforge_operator.backup.store import BackupStore, MiB, StoreConfig, missing_object
from stackforge_operator.drill import check_login, roles, user_checks
from stackforge_operator.drill import checks as verify
from stackforge_operator.drill.await_server import await_listening, server_listens
from stackforge_operator.drill.grading import (
    Failure,
    Objectives,
    Reason,
    elapsed_seconds,
    grade,
)
from stackforge_operator.drill.outcome import DrillOutcome, PhysicalFacts, RestoreFacts
from stackforge_operator.drill.restore import stream_restore
from stackforge_operator.drill.selection import (
    DUMP_ARTIFACT,
    BackupChoice,
    recovery_point,
    select_backup,
)
from stackforge_operator.models.drill import CheckResult
from stackforge_operator.version import VERSION

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("stackforge_operator.drill")

# Large reads keep Python's per-chunk work (hash, pipe write) small next to the bytes moved.
DEFAULT_CHUNK_SIZE = 4 * MiB
_TENANT_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# The drill run id is a key segment of the report: no slashes, no dot-only names.
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# A Physical drill's runner asks the restored database this often until it answers.
# Not faster once it listens: until the upkeep has changed the passwords each
# try is a SCRAM exchange that fails (CPU on both sides, a FATAL line in the
# server's log), and at 0.05 s a 1 GB drill was not faster (run M).
RESTORED_POLL_SECONDS = 0.2
WAITING = "waiting for the restored database to answer"
SCRATCH_WAITING = "waiting for the database to accept connections"
# How often a dump's restore asks again whether the database accepts connections.
CONNECT_RETRY_SECONDS = 0.5
# Reasons after which there is no point in trying to write a report.
_NO_REPORT = {"S3Unreachable", "S3Timeout"}


@dataclass(frozen=True)
class PhysicalRecovery:
    """A Physical drill's restore, done by the scratch pod: from where, to when."""

    repository: str  # pgBackRest's repo1-path in the bucket
    target: datetime | None = None  # None: the end of the archive
    # How long the database may take to answer, counted from the run's start:
    # the scratch pod may still be restoring when the runner starts (it
    # answers, with the scratch password, only once promoted).
    wait_seconds: float = 0

    def describe(self) -> str:
        moment = self.target.isoformat() if self.target else "the last archived moment"
        return f"a physical restore of {self.repository} to {moment}"


@dataclass(frozen=True)
class DrillRequest:
    """What to drill and how to grade it; secrets are not here (they stay in the environment)."""

    tenant: str
    store: StoreConfig
    backup: BackupChoice = field(default_factory=BackupChoice)
    run_id: str | None = None
    started_at: datetime | None = None
    objectives: Objectives = field(default_factory=Objectives)
    row_counts: bool = True
    # Whether the dump's SHA-256 is compared with the manifest's (a DRDrill's
    # spec.checks.checksum); off, no Checksum check is reported at all.
    checksum: bool = True
    queries: tuple[verify.QueryCheckSpec, ...] = ()
    pg_bin_dir: Path | None = None
    query_timeout_seconds: float = verify.DEFAULT_QUERY_TIMEOUT_SECONDS
    # What the SQL checks' login reads (check_login.py): per-schema grants in a
    # throw-away copy, pg_read_all_data in a tenant's own database.
    checks_read: check_login.ReadAccess = "schemas"
    chunk_size: int = DEFAULT_CHUNK_SIZE
    recovery: PhysicalRecovery | None = None
    # A tenant's database created from the dump (spec.bootstrap.logical), not a
    # drill's scratch one: owners and grants kept, their roles made where
    # missing; and no report, since the bucket is another tenant's.
    keep_owners: bool = False
    write_report: bool = True
    # A dump's restore: how long the database may take to accept connections
    # before the restore starts (Physical drills wait in ``recovery`` instead).
    connect_wait_seconds: float = 0

    def describe(self) -> str:
        return self.recovery.describe() if self.recovery else self.backup.describe()


def _now() -> datetime:
    return datetime.now(UTC)


def report_key(store: StoreConfig, tenant: str, backup_id: str | None, run_id: str) -> str:
    """Beside the backup; without one, under the tenant (never a run id retention would see)."""
    if backup_id is None:
        return f"{store.tenant_prefix(tenant)}drills/{run_id}.json"
    return f"{store.run_prefix(tenant, backup_id)}drills/{run_id}.json"


def run_drill(
    request: DrillRequest,
    *,
    env: Mapping[str, str] | None = None,
    client: S3Client | None = None,
    clock: Callable[[], datetime] = _now,
) -> DrillOutcome:
    """Run one drill; never raises for a failure of the drill, returns it instead.

    ``env`` is what pg_restore and psql get (libpq's PGHOST, PGPORT, PGUSER,
    PGPASSWORD, PGDATABASE name the scratch database; default: ours).  boto3
    takes its credentials from this process's environment, or pass ``client``.
    """
    env = dict(os.environ if env is None else env)
    started = request.started_at or clock()
    run_id = request.run_id or new_run_id(clock())
    secrets = secret_values([env.get("AWS_SECRET_ACCESS_KEY", ""), env.get("PGPASSWORD", "")])
    drill = _Drill(request, BackupStore(request.store, client), env, secrets, clock, started)
    try:
        drill.execute()
    except BackupFailure as exc:
        drill.fail(exc.reason, exc.message)
    except (ClientError, BotoCoreError) as exc:
        failure = s3_failure(exc, drill.doing)
        drill.fail(failure.reason, failure.message)
    except KeyboardInterrupt:
        drill.fail("Interrupted", f"interrupted while {drill.doing}")
    except Exception as exc:  # reported, not swallowed: the drill fails with it
        drill.fail("InternalError", f"{drill.doing}: {type(exc).__name__}: {exc}")
    return drill.finish(run_id)


class _Drill:
    def __init__(
        self,
        request: DrillRequest,
        store: BackupStore,
        env: dict[str, str],
        secrets: list[str],
        clock: Callable[[], datetime],
        started: datetime,
    ) -> None:
        self.request = request
        self.store = store
        self.env = env
        self.secrets = secrets
        self.clock = clock
        self.started = started
        self.doing = "starting"
        self.failures: list[Failure] = []
        self.manifest: Manifest | None = None
        self.checks: list[CheckResult] = []
        self.restore: RestoreFacts | None = None
        self.recovery_point: datetime | None = None  # Physical: the last replayed commit
        self.verified_at: datetime | None = None
        self.tools = {"stackforge-operator": VERSION}

    def step(self, doing: str) -> None:
        self.doing = doing
        log.info("%s", doing)

    def fail(self, reason: str, message: str) -> None:
        self.failures.append(Failure(reason, redact(message, self.secrets)))

    # -- the drill -----------------------------------------------------------------

    def execute(self) -> None:
        request = self.request
        if not _TENANT_RE.match(request.tenant):
            raise BackupFailure("InvalidArguments",
                                f"tenant {request.tenant!r} is not a DNS-1123 label")
        if request.run_id is not None and not _RUN_ID_RE.match(request.run_id):
            raise BackupFailure("InvalidArguments", f"run id {request.run_id!r} is not usable "
                                "as a key segment ([A-Za-z0-9._-], at most 128)")
        psql = find_tool("psql", request.pg_bin_dir)
        if request.recovery is not None:
            self.tools["psql"] = tool_version(psql)
            self._verify_physical(psql, request.recovery)
            return
        pg_restore = find_tool("pg_restore", request.pg_bin_dir)
        self.tools["pg_restore"] = tool_version(pg_restore)

        self.step(f"looking for {request.backup.describe()} of {request.tenant} "
                  f"in s3://{self.store.bucket}/{self.store.config.tenant_prefix(request.tenant)}")
        manifest = self._select()
        self.manifest = manifest
        dump = manifest.artifact(DUMP_ARTIFACT)
        assert dump is not None  # select_backup returns only manifests with a dump
        self._until_listening(request.connect_wait_seconds)

        if request.keep_owners:
            self.step("making the roles the dump names")
            made = roles.ensure(psql, self.env,
                                manifest.postgres.roles if manifest.postgres else [],
                                self.secrets)
            self.checks.append(made)
            if not made.passed:
                raise BackupFailure(Reason.RESTORE_FAILED, made.message or "making roles failed")
        try:
            decode = dump_format.decoder(dump.format)
        except ValueError as unknown:
            raise BackupFailure(Reason.RESTORE_FAILED, f"{dump.key}: {unknown}") from None
        self.step(f"restoring s3://{self.store.bucket}/{dump.key} ({dump.size_bytes} bytes, "
                  f"{dump.format or dump_format.GZIP_FORMAT})")
        # Into a tenant's database (one transaction), a dump whose hash is not
        # the manifest's is never committed: its end is withheld.
        result = stream_restore(
            self._open_dump(dump.key), pg_restore, self.env,
            keep_owners=request.keep_owners, decode=decode,
            expected_sha256=dump.sha256 if request.keep_owners and request.checksum else None)
        tail = redact_lines(result.stderr_tail, self.secrets)
        self.restore = RestoreFacts(result.seconds, result.size_bytes, result.sha256,
                                    result.exit_code, tail)
        log.info("pg_restore exited %d after %.1fs, %d bytes", result.exit_code,
                 result.seconds, result.size_bytes)
        if request.checksum:
            checksum = verify.checksum_check(dump.sha256, result.sha256, result.size_bytes,
                                             dump.size_bytes)
            self.checks.append(checksum)
            if not checksum.passed:
                self.fail(Reason.CHECKSUM_MISMATCH, f"{dump.key}: {checksum.message}")
        else:
            # The hash is still in the report (restore.sha256), for a person to compare.
            log.info("the dump's checksum is not verified (--no-checksum)")
        if not result.restored:
            self.fail(Reason.RESTORE_FAILED,
                      f"pg_restore exited {result.exit_code}: {tail or '(no output)'}")
        if self.failures:
            # Rows restored from a corrupt or half-restored archive prove
            # nothing: the run has failed already, skip the data checks.
            return
        self.step("verifying the restored database")
        self.checks.extend(self._verify(psql, manifest))
        self.verified_at = self.clock()

    def _verify_physical(self, psql_path: str, recovery: PhysicalRecovery) -> None:
        self.step(f"verifying {recovery.describe()} "
                  f"(s3://{self.store.bucket}{recovery.repository})")
        psql = verify.Psql(psql_path, privileged_env(self.env), secrets=self.secrets,
                           query_timeout_seconds=self.request.query_timeout_seconds)
        # The wait is the run's, from its start: await_server (which started
        # this process) has spent part of it, and the sandbox's deadline counts
        # from the start too. Waited afresh here, a server that never came
        # kept the runner past its Job's deadline, killed with no report.
        spent = (self.clock() - self.started).total_seconds()
        connectivity = self._restored(psql, max(0.0, recovery.wait_seconds - spent))
        self.checks.append(connectivity)
        if not connectivity.passed:
            return
        recovered, self.recovery_point = verify.recovery_check(psql, recovery.target)
        self.checks.append(recovered)
        self.checks.extend(self._query_checks(psql_path))
        self.verified_at = self.clock()

    def _restored(self, psql: verify.Psql, wait_seconds: float) -> CheckResult:
        """The connectivity check, retried while the restored database may still come.

        While nothing listens (the scratch pod is still restoring: most of a
        drill's time) a refused TCP connect says so for next to no CPU; psql,
        a process of a few milliseconds each, is asked only once the server
        listens. The restore beside it has the CPU to itself."""
        deadline = time.monotonic() + wait_seconds
        while True:
            if time.monotonic() >= deadline or server_listens(self.env):
                connectivity = verify.connectivity_check(psql)
                if connectivity.passed or time.monotonic() >= deadline:
                    return connectivity
            if self.doing != WAITING:
                self.step(WAITING)
            time.sleep(RESTORED_POLL_SECONDS)

    def _until_listening(self, wait_seconds: float) -> None:
        """Until the database accepts TCP connections, for at most ``wait_seconds``.

        The operator starts a drill's Job once the scratch pod is Ready, but the
        runner's own pod can be refused a moment longer: the node's rules for
        the Service (kube-proxy refuses a Service whose endpoint it has not yet
        seen) and the NetworkPolicy enforcer's admission of a new pod come after
        their events. pg_restore failed a drill so on the real node. What still
        refuses after the wait is pg_restore's to report."""
        if wait_seconds > 0 and not server_listens(self.env):
            self.step(SCRATCH_WAITING)
            await_listening(self.env, wait_seconds, CONNECT_RETRY_SECONDS)

    def _select(self) -> Manifest:
        request = self.request
        runs = [] if request.backup.run_id else self.store.list_runs(request.tenant, uploads=False)
        manifest = select_backup(
            request.backup, runs, lambda run_id: self.store.read_manifest(request.tenant, run_id)
        )
        if manifest is None:
            raise BackupFailure(
                Reason.BACKUP_NOT_FOUND,
                f"no {request.backup.describe()} with a PostgreSQL dump for tenant "
                f"{request.tenant} under s3://{self.store.bucket}/"
                f"{self.store.config.tenant_prefix(request.tenant)}",
            )
        log.info("backup %s (finished %s)", manifest.run_id, manifest.finished_at.isoformat())
        return manifest

    def _open_dump(self, key: str) -> Iterator[bytes]:
        # GET before pg_restore starts: a missing object is BackupNotFound,
        # not a restore that died on empty input.
        try:
            body = self.store.client.get_object(Bucket=self.store.bucket, Key=key)["Body"]
        except ClientError as exc:
            if missing_object(exc):
                raise BackupFailure(
                    Reason.BACKUP_NOT_FOUND, f"the manifest names {key}, which is gone"
                ) from exc
            raise
        return body.iter_chunks(self.request.chunk_size)

    def _verify(self, psql_path: str, manifest: Manifest) -> list[CheckResult]:
        request = self.request
        psql = verify.Psql(psql_path, privileged_env(self.env), secrets=self.secrets,
                           query_timeout_seconds=request.query_timeout_seconds)
        connectivity = verify.connectivity_check(psql)
        if not connectivity.passed:
            return [connectivity]
        found = [connectivity]
        if request.row_counts:
            expected = manifest.postgres.row_counts if manifest.postgres else {}
            found.extend(verify.row_count_checks(psql, expected))
        found.extend(self._query_checks(psql_path))
        return found

    def _query_checks(self, psql_path: str) -> list[CheckResult]:
        """The user's SQL checks, as a login of their own (user_checks.py)."""
        if not self.request.queries:
            return []
        self.step("running the SQL checks as their own login")
        return user_checks.run(psql_path, self.env, self.request.queries,
                               query_timeout_seconds=self.request.query_timeout_seconds,
                               secrets=self.secrets, access=self.request.checks_read)

    # -- the outcome -----------------------------------------------------------------

    def finish(self, run_id: str) -> DrillOutcome:
        manifest = self.manifest
        recovery = self.request.recovery
        point = recovery_point(manifest) if manifest is not None else self.recovery_point
        rto = elapsed_seconds(self.verified_at, self.started) if self.verified_at else None
        # What the restore lost: up to the moment asked for (a physical target,
        # or a dump's "before=<time>"), or up to the drill's start.
        wanted = (recovery.target if recovery is not None and recovery.target
                  else self.request.backup.before or self.started)
        rpo = elapsed_seconds(wanted, point) if point else None
        verdict = grade(self.checks, rto_seconds=rto, rpo_seconds=rpo,
                        objectives=self.request.objectives, failures=self.failures)
        outcome = DrillOutcome(
            tenant=self.request.tenant, run_id=run_id, grade=verdict, started_at=self.started,
            finished_at=self.clock(), selection=self.request.describe(),
            objectives=self.request.objectives, manifest=manifest,
            recovery_point=point, verified_at=self.verified_at, rto_seconds=rto,
            rpo_seconds=rpo, checks=self.checks, restore=self.restore, tools=self.tools,
            physical=None if recovery is None else PhysicalFacts(
                location=f"s3://{self.store.bucket}{recovery.repository}",
                target=recovery.target),
        )
        log.info("verdict %s%s", verdict.verdict.value,
                 f" ({verdict.reason}): {verdict.message}" if verdict.reason else "")
        if self.request.write_report and not any(f.reason in _NO_REPORT
                                                 for f in self.failures):
            self._write_report(outcome)
        return outcome

    def _write_report(self, outcome: DrillOutcome) -> None:
        key = report_key(self.store.config, outcome.tenant, outcome.backup_id, outcome.run_id)
        report = outcome.report_json()
        try:
            self.store.put_bytes(key, report)
        except (ClientError, BotoCoreError) as exc:
            failure = s3_failure(exc, f"writing the report {key}")
            outcome.report_error = redact(f"{failure.reason}: {failure.message}", self.secrets)
            log.warning("%s", outcome.report_error)
            return
        except ValueError as exc:
            # botocore's refusal to make a client (an endpoint it cannot use):
            # a Physical drill makes its client only here (store.make_client).
            outcome.report_error = redact(f"InvalidStorage: {exc}", self.secrets)
            log.warning("%s", outcome.report_error)
            return
        except KeyboardInterrupt:
            # SIGTERM while the report uploads: the verdict line still goes out.
            outcome.report_error = f"Interrupted: writing the report {key}"
            return
        outcome.report_location = f"s3://{self.store.bucket}/{key}"
        log.info("report: %s", outcome.report_location)


def redact_lines(text: str, secrets: list[str]) -> str:
    """``redact`` for multi-line tool output: each line cleaned, line breaks kept."""
    return "\n".join(redact(line, secrets) for line in text.splitlines())
