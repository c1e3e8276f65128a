"""A tenant created from another tenant's archive (spec.bootstrap.recovery): is it possible,
what exactly is restored, and when is it done.

Until the restore is set up nothing of the tenant is applied: a primary
started without it would initialise an empty database, and an initialised
volume is never restored over. So every refusal holds the whole tenant:

- the source tenant, its BackupPolicy, its physical backups, its Secrets
  must exist, and the policy must let this namespace restore it
  (``continuousArchiving.allowedRestoreNamespaces``: a restore hands this
  namespace the bucket's keys and the repository's passphrase);
- the PostgreSQL major version and database name must be the source's (a
  physical restore is the source's cluster, byte for byte);
- the target must be inside the policy's recoverability window
  (reconcile/drill_recovery.py: before it stalls, after it waits).

What is restored (repository, target) is fixed in ``status.bootstrap`` when
the restore is set up. Once the restored primary is Ready (promoted, this
tenant's passwords set by its upkeep sidecar), ``completionTime`` is set: the
copies of the source's Secrets are deleted and the restore's settings leave
the primary's pod (its one restart); the database archives under this
tenant's own repository path if a policy of its own asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import ValidationError

from stackforge_operator import API_GROUP, API_VERSION, kube, status
from stackforge_operator.builders import bootstrap as builders
from stackforge_operator.builders import credentials, postgres
from stackforge_operator.builders.common import Manifest
from stackforge_operator.models.backup import BackupPolicySpec, BackupPolicyStatus, BackupTarget
from stackforge_operator.models.common import SecretKeyRef
from stackforge_operator.models.effective import EffectiveTenant, Restore, resolve
from stackforge_operator.models.tenant import (
    Bootstrap,
    BootstrapMethod,
    BootstrapStatus,
    DumpSource,
    RecoverySource,
    StackForgeTenantSpec,
)
from stackforge_operator.pod_health import job_conditions, result_of
from stackforge_operator.reconcile import archiving_policy, drill_recovery, storage
from stackforge_operator.reconcile.tenant_observe import live_placement_problem
from stackforge_operator.status import WorkloadState

API = f"{API_GROUP}/{API_VERSION}"
# The runner's reason for a dump that was restored (committed) yet failed its
# verification (drill/grading.py): a check after the restore. Not a checksum
# that differs: the runner then withholds the archive's end, and pg_restore's
# one transaction rolls back (drill/restore.py).
_FAILED_AFTER_COMMIT: Final = ("CheckFailed",)
FIELD = "spec.bootstrap.recovery"
DUMP_FIELD = "spec.bootstrap.logical"


# Nothing of the tenant is applied: the rollup says why (a refusal of the restore's).
Held = drill_recovery.Refusal


@dataclass(frozen=True)
class Prepared:
    """The restore, its record, and the Secret copies it needs (none once done).

    ``restore``: an archive, restored by the primary's first start; ``dump``: a
    dump, restored by a runner Job once the primary is Ready.
    """

    restore: Restore | None
    recorded: BootstrapStatus
    copies: list[Manifest]
    dump: builders.DumpRestore | None = None


def _stalled(reason: str, message: str) -> Held:
    return Held(status.Progress.STALLED, reason, message)


def _not_allowed(field: str, policy: str, namespace: str, list_field: str) -> Held:
    return _stalled("RestoreNotAllowed", f"{field}: BackupPolicy {policy} does not list "
                                         f"namespace {namespace} in {list_field}")


def prepare(t: EffectiveTenant, spec: StackForgeTenantSpec, recorded: BootstrapStatus | None,
            now: datetime, *, tenant_created: datetime | None = None) -> Prepared | Held | None:
    """What the tenant's reconcile applies for its bootstrap (None: it has none);
    ``tenant_created``: the tenant object's creationTimestamp."""
    if spec.bootstrap is None:
        return None
    if recorded is not None and recorded.completion_time is not None:
        return Prepared(None, recorded, [])
    if recorded is None and (kept := _existing_database(t, tenant_created)) is not None:
        return Prepared(None, _not_restored(spec.bootstrap, kept, now), [])
    if spec.bootstrap.logical is not None:
        return _prepare_dump(t, spec.bootstrap.logical, recorded, now)
    wanted = spec.bootstrap.recovery
    assert wanted is not None  # a CEL rule: exactly one of recovery and logical
    source = _compatible_source(t, wanted.tenant, FIELD, compatibility_problem)
    if isinstance(source, Held):
        return source
    namespace, source_t = source
    if recorded is not None and recorded.backup_policy:
        # The policy the restore began from, not whichever archives now: another
        # (a bucket moved) would pair its bucket and keys with this repository.
        wanted = wanted.model_copy(update={"backup_policy": recorded.backup_policy})
    found = _policy(wanted, source_t, namespace)
    if isinstance(found, Held):
        return found
    policy_name, policy, observed = found
    archive = policy.continuous_archiving
    if archive is None and recorded is not None:
        # (Before a restore begins, physical_source() says so with the window.)
        return _stalled("BootstrapSourceNotFound",
                        f"{FIELD}: BackupPolicy {namespace}/{policy_name}, whose repository "
                        "this restore reads, no longer archives (spec.continuousArchiving): "
                        "its keys and passphrase are not known any more")
    if archive is not None and t.namespace not in archive.allowed_restore_namespaces:
        return _not_allowed(FIELD, f"{namespace}/{policy_name}", t.namespace,
                            "spec.continuousArchiving.allowedRestoreNamespaces")
    if recorded is not None and recorded.archive_fingerprint not in (
            None, archiving_policy.fingerprint(policy)):
        # Held, the primary's pod keeps the settings it restores with; built again
        # from the policy, it would restart the restore in a place that is not it.
        return _stalled("BootstrapSourceChanged",
                        f"{FIELD}: BackupPolicy {namespace}/{policy_name} changed its storage "
                        "or repository cipher since this restore began: the repository it "
                        "restores is not where it was. Put them back (the restore goes on), or "
                        "delete this tenant and its claim data-postgres-0 and make it again")
    if recorded is None:
        chosen = drill_recovery.physical_source(
            wanted.point_in_time, policy_name, policy, observed,
            field=f"{FIELD}.pointInTime", what="the restore", now=now)
        if isinstance(chosen, Held):
            return chosen
        recorded = BootstrapStatus(
            source_tenant=wanted.tenant, source_namespace=namespace, backup_policy=policy_name,
            repository_path=chosen.repository_path, recovery_target=chosen.target,
            archive_fingerprint=archiving_policy.fingerprint(policy), start_time=now)
    copies = _copies(t, policy, namespace)
    if isinstance(copies, Held):
        return copies
    assert recorded.repository_path and recorded.recovery_target  # a Physical record
    restore = builders.restore(recorded.source_tenant, recorded.repository_path,
                               recorded.recovery_target, policy.storage)
    return Prepared(restore, recorded, copies)


def _existing_database(t: EffectiveTenant, tenant_created: datetime | None) -> str | None:
    """The primary's data claim, when one is older than the tenant itself.

    Claims outlive their tenant (whenDeleted: Retain). A tenant made again in
    place, spec.bootstrap and all (a GitOps sync, a re-applied manifest), found
    its database again: a clone's first start then restored nothing yet
    recorded the new target as restored, and a dump's Job ran pg_restore into
    the live database, failed on what exists, and held the apps at zero for ever.
    Older, not merely there: the claim of a bootstrap whose start was not
    recorded yet (its status write lost) is the tenant's own, made after it.
    """
    if tenant_created is None:
        return None
    for claim in kube.list_objects("v1", "PersistentVolumeClaim", namespace=t.namespace):
        meta = claim["metadata"]
        made = meta.get("creationTimestamp")
        if (postgres.primary_claim_ordinal(str(meta["name"])) is not None
                and not meta.get("deletionTimestamp")
                and made and datetime.fromisoformat(str(made)) < tenant_created):
            return str(meta["name"])
    return None


def _not_restored(wanted: Bootstrap, kept: str, now: datetime) -> BootstrapStatus:
    source = wanted.logical if wanted.logical is not None else wanted.recovery
    assert source is not None  # a CEL rule: exactly one of recovery and logical
    return BootstrapStatus(
        method=BootstrapMethod.LOGICAL if wanted.logical is not None else BootstrapMethod.PHYSICAL,
        source_tenant=source.tenant, source_namespace="", backup_policy=source.backup_policy or "",
        kept_volume=kept, start_time=now, completion_time=now)


def _prepare_dump(t: EffectiveTenant, wanted: DumpSource, recorded: BootstrapStatus | None,
                  now: datetime) -> Prepared | Held:
    """spec.bootstrap.logical: the source's dump, the policy that made it, its Secrets."""
    source = _compatible_source(t, wanted.tenant, DUMP_FIELD, dump_compatibility_problem)
    if isinstance(source, Held):
        return source
    namespace, source_t = source
    found = _dump_policy(wanted, source_t.name, namespace)
    if isinstance(found, Held):
        return found
    policy_name, policy = found
    if t.namespace not in policy.allowed_dump_restore_namespaces:
        return _not_allowed(DUMP_FIELD, f"{namespace}/{policy_name}", t.namespace,
                            "spec.allowedDumpRestoreNamespaces")
    if recorded is None:
        recorded = BootstrapStatus(
            method=BootstrapMethod.LOGICAL, source_tenant=wanted.tenant,
            source_namespace=namespace, backup_policy=policy_name,
            backup=dump_argument(wanted), job_name=builders.DUMP_JOB, start_time=now)
    copies = _storage_copies(t, policy, namespace, DUMP_FIELD)
    if isinstance(copies, Held):
        return copies
    dump = builders.dump_restore(recorded.source_tenant, recorded.backup or "latest",
                                 policy.storage)
    return Prepared(None, recorded, copies, dump)


def dump_argument(wanted: DumpSource) -> str:
    """The runner's ``--backup``: a run id, ``before=<time>``, or latest."""
    if wanted.backup_id is not None:
        return wanted.backup_id
    if wanted.finished_before is not None:
        return f"before={wanted.finished_before.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
    return "latest"


def dump_compatibility_problem(t: EffectiveTenant, source: EffectiveTenant) -> str | None:
    """Why this tenant cannot take the source's dump, or None: pg_restore reads a dump
    into the same or a newer major version (the upgrade path), never an older one."""
    if not t.postgres.enabled:
        return f"{DUMP_FIELD} restores a database: spec.components.postgres must be enabled"
    if int(t.postgres.version) < int(source.postgres.version):
        return (f"{DUMP_FIELD}: tenant {source.name}'s PostgreSQL {source.postgres.version} "
                f"dump cannot be restored into PostgreSQL {t.postgres.version}: set "
                f"spec.components.postgres.version to {source.postgres.version} or newer")
    return None


def compatibility_problem(t: EffectiveTenant, source: EffectiveTenant) -> str | None:
    """Why this tenant cannot take the source's database as it is, or None."""
    if not t.postgres.enabled:
        return f"{FIELD} restores a database: spec.components.postgres must be enabled"
    if t.postgres.version != source.postgres.version:
        return (f"{FIELD}: PostgreSQL {t.postgres.version} cannot start tenant "
                f"{source.name}'s PostgreSQL {source.postgres.version} database (a physical "
                f"restore keeps its major version): set spec.components.postgres.version "
                f"to {source.postgres.version}")
    if t.postgres.database != source.postgres.database:
        return (f"{FIELD}: the restored database is {source.postgres.database!r}: set "
                f"spec.components.postgres.database to it (not {t.postgres.database!r})")
    return None


def primary_serving(states: Sequence[WorkloadState]) -> bool:
    """The primary's StatefulSet is Ready with a pod that runs. At zero (the
    tenant suspended, or a window open, mid-restore) it is ready as a
    workload, yet has restored nothing: the restore was recorded complete, its
    settings and copied keys went, and the next start found half a database."""
    return any(s.name == postgres.NAME and s.ready and s.ready_replicas > 0 for s in states)


def completed_while_held(recorded: BootstrapStatus | None, primary_ready: bool,
                         now: datetime) -> BootstrapStatus | None:
    """A restore under way whose source can no longer be read (the source tenant
    deleted, its policy gone or no longer allowing this namespace) holds the
    tenant; its primary, started with the restore's settings, may still finish
    it. Without this the completion was never recorded and the tenant stayed
    held for ever. The new record once the primary is Ready
    (tenant_bootstrap.primary_ready of its live StatefulSet), else None."""
    if recorded is None or recorded.completion_time is not None:
        return None
    done = completed(recorded, primary_ready, now)
    return done if done.completion_time is not None else None


def completed(recorded: BootstrapStatus, primary_ready: bool, now: datetime) -> BootstrapStatus:
    """The record, with its completion once the restored primary is Ready (an archive;
    a dump is done when its Job is: ``dump_progress``)."""
    if recorded.completion_time is not None or not primary_ready \
            or recorded.method is BootstrapMethod.LOGICAL:
        return recorded
    return recorded.model_copy(update={"completion_time": now})


def dump_progress(recorded: BootstrapStatus, job: Mapping[str, Any] | None,
                  result: Mapping[str, Any], now: datetime) -> BootstrapStatus:
    """The record after a look at the dump's Job and its runner's result line.

    Done when the Job completed and the runner passed (restored, checksum and
    row counts verified); a failed Job's reason is kept until a new one runs.
    """
    if recorded.completion_time is not None or job is None:
        return recorded
    ended = job_conditions(job)
    passed = result.get("verdict") == "Passed"
    if "Complete" in ended and passed:
        return recorded.model_copy(update={
            "completion_time": now, "message": None,
            "backup_id": str(result.get("backupId") or "") or None})
    if "Failed" in ended or "Complete" in ended:
        reason = result.get("reason") or "JobFailed"
        text = str(result.get("message") or f"kubectl logs -n {job['metadata']['namespace']} "
                                            f"job/{job['metadata']['name']}")
        return recorded.model_copy(update={
            "message": f"{reason}: {text}"[:2048],
            "backup_id": str(result.get("backupId") or "") or recorded.backup_id})
    if recorded.message is not None and not ended:
        # A new Job (the failed one deleted): its own result will speak.
        return recorded.model_copy(update={"message": None})
    return recorded


def dump_result(messages: Sequence[str],
                parse: Callable[[str], dict[str, Any] | None]) -> dict[str, Any]:
    """The dump restore's result among its Job's pods (one per attempt): one that
    failed after pg_restore's transaction committed, if any pod says so. The
    attempts after it fail on what it made ("already exists"), and the result
    was whichever pod the list named first: the status could then say the
    database is as it was, to delete the Job and try again, while it held an
    unverified dump. Else the first result (or the log's end) as for any runner."""
    for message in messages:
        parsed = parse(message)
        if parsed is not None and str(parsed.get("reason") or "").startswith(
                _FAILED_AFTER_COMMIT):
            return parsed
    return result_of(messages, parse, log_tail_as_message=True)


def events(old: BootstrapStatus | None,
           new: BootstrapStatus | None) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events the record's change calls for."""
    if new is None:
        return []
    logical = new.method is BootstrapMethod.LOGICAL
    what = (f"tenant {new.source_tenant}'s dump ({new.backup})" if logical
            else f"{new.repository_path} of tenant {new.source_tenant} to {new.recovery_target}")
    out = []
    if new.kept_volume is not None:
        return [] if old is not None else [(
            "Warning", "RestoreSkipped",
            f"volume {new.kept_volume} already holds a database (the tenant was made again in "
            f"place): nothing is restored over it. To restore tenant {new.source_tenant}'s, "
            "delete the tenant and that claim, then create it again")]
    if old is None:
        out.append(("Normal", "RestoreStarted", f"restoring {what}"))
    if new.message and (old is None or old.message != new.message):
        out.append(("Warning", "RestoreFailed", f"restoring {what}: {new.message}"))
    if new.completion_time is not None and (old is None or old.completion_time is None):
        done = (f"the database holds tenant {new.source_tenant}'s dump {new.backup_id}, "
                f"owners and grants included" if logical
                else f"the database is tenant {new.source_tenant}'s at {new.recovery_target}")
        out.append(("Normal", "RestoreComplete",
                    f"{done}; the copies of its Secrets are deleted"))
    return out


def rollup(recorded: BootstrapStatus | None, progress: status.Progress, reason: str,
           message: str) -> tuple[status.Progress, str, str]:
    """The tenant's rollup while its bootstrap is not done.

    An archive: the reconcile that sees the restored primary Ready records the
    completion, and only the next one takes the restore's settings off the
    primary, which restarts it: Ready now would let a reader (``kubectl wait``,
    a person's psql) meet the pod as it goes away. A dump: the apps are held
    until it is restored; a failed restore stalls the tenant with its reason.
    """
    if recorded is None or recorded.completion_time is not None \
            or progress is status.Progress.STALLED:
        return progress, reason, message
    if recorded.method is BootstrapMethod.LOGICAL:
        if recorded.message:
            failed = (f"restoring tenant {recorded.source_tenant}'s dump ({recorded.backup}) "
                      f"failed: {recorded.message}")
            if recorded.message.startswith(_FAILED_AFTER_COMMIT):
                # pg_restore's one transaction had committed: trying again
                # meets what it made ("already exists") and fails.
                return (status.Progress.STALLED, "BootstrapFailed",
                        f"{failed}; the dump did not verify, and its one transaction may "
                        "have committed (the Job's log says): the database then holds it "
                        "and a second Job fails on what exists. Look at the database; to "
                        "start over, delete the tenant and its claim "
                        f"{postgres.data_claim(postgres.NAME, 0)}, then create it again")
            return (status.Progress.STALLED, "BootstrapFailed",
                    f"{failed}; the restore is one transaction, the database is as it "
                    f"was: delete Job {recorded.job_name} to try again")
        return (status.Progress.RECONCILING, "RestoringDump",
                f"restoring tenant {recorded.source_tenant}'s dump ({recorded.backup}); "
                f"the apps and read replicas start after it")
    if progress is not status.Progress.READY:
        return progress, reason, message
    return (status.Progress.RECONCILING, "Restored",
            f"restored from tenant {recorded.source_tenant} to "
            f"{recorded.recovery_target}: the primary restarts "
            f"without the restore's settings")


def _compatible_source(
    t: EffectiveTenant, name: str, field: str,
    problem: Callable[[EffectiveTenant, EffectiveTenant], str | None],
) -> tuple[str, EffectiveTenant] | Held:
    """The source tenant's namespace and settings, if this tenant can take its database."""
    source = _source_tenant(name, field)
    if isinstance(source, Held):
        return source
    body, source_t = source
    if (mismatch := problem(t, source_t)) is not None:
        return _stalled("BootstrapIncompatible", mismatch)
    return body["metadata"]["namespace"], source_t


def _source_tenant(name: str, field: str) -> tuple[Mapping[str, Any], EffectiveTenant] | Held:
    found = kube.list_objects(API, "StackForgeTenant", field_selector=f"metadata.name={name}")
    # The one that holds the name: a namesake that lost it (Stalled, TenantNameTaken)
    # may have a policy on the same bucket and prefix, which its owner chose, and
    # the first of the list was whichever namespace sorted first.
    placed = [body for body in found if live_placement_problem(body["metadata"]) is None]
    if not placed:
        return _stalled("BootstrapSourceNotFound",
                        f"{field}.tenant: no StackForgeTenant {name} in the cluster"
                        if not found else f"{field}.tenant: StackForgeTenant {name} may not "
                        "run where it is (see its Stalled condition): nothing is restored "
                        "from it")
    body = placed[0]
    try:
        spec = StackForgeTenantSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return _stalled("BootstrapSourceNotFound",
                        f"{field}.tenant: StackForgeTenant {name} has an invalid spec")
    return body, resolve(name, spec, namespace=body["metadata"]["namespace"])


def _policy(wanted: RecoverySource, source: EffectiveTenant, namespace: str) -> (
    tuple[str, BackupPolicySpec, BackupPolicyStatus] | Held
):
    policies = [p for p in kube.list_objects(API, "BackupPolicy", namespace=namespace)
                if (p.get("spec") or {}).get("tenantRef", {}).get("name") == source.name]
    if wanted.backup_policy is not None:
        policies = [p for p in policies if p["metadata"]["name"] == wanted.backup_policy]
    else:
        archiving = archiving_policy.archiving(policies)
        policies = [p for p in policies
                    if archiving is not None and p["metadata"]["name"] == archiving.policy]
    if not policies:
        named = wanted.backup_policy or "that archives"
        return _stalled("BootstrapSourceNotFound",
                        f"{FIELD}: tenant {source.name} has no BackupPolicy {named} in "
                        f"{namespace}")
    body = policies[0]
    try:
        spec = BackupPolicySpec.model_validate(body["spec"])
        observed = BackupPolicyStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return _stalled("BootstrapSourceNotFound",
                        f"{FIELD}: BackupPolicy {namespace}/{body['metadata']['name']} is invalid")
    return body["metadata"]["name"], spec, observed


def _dump_policy(wanted: DumpSource, source: str, namespace: str) -> (
    tuple[str, BackupPolicySpec] | Held
):
    """The source's policy whose dumps are restored: the one named, else its only
    policy that dumps PostgreSQL."""
    found: list[tuple[str, BackupPolicySpec]] = []
    for body in kube.list_objects(API, "BackupPolicy", namespace=namespace):
        if (body.get("spec") or {}).get("tenantRef", {}).get("name") != source:
            continue
        name = body["metadata"]["name"]
        if wanted.backup_policy is not None and name != wanted.backup_policy:
            continue
        try:
            spec = BackupPolicySpec.model_validate(body["spec"])
        except ValidationError:
            return _stalled("BootstrapSourceNotFound",
                            f"{DUMP_FIELD}: BackupPolicy {namespace}/{name} is invalid")
        if BackupTarget.POSTGRES in spec.targets:
            found.append((name, spec))
    if not found:
        named = f"BackupPolicy {wanted.backup_policy}" if wanted.backup_policy else (
            "BackupPolicy")
        return _stalled("BootstrapSourceNotFound",
                        f"{DUMP_FIELD}: tenant {source} has no {named} that dumps PostgreSQL "
                        f"in {namespace}")
    if len(found) > 1:
        return _stalled("BootstrapSourceAmbiguous", (
            f"{DUMP_FIELD}: tenant {source}'s BackupPolicies "
            f"{', '.join(sorted(n for n, _ in found))} all dump PostgreSQL: name one in "
            f"{DUMP_FIELD}.backupPolicy"))
    return found[0]


def _storage_copies(t: EffectiveTenant, policy: BackupPolicySpec, namespace: str,
                    field: str, cipher: SecretKeyRef | None = None) -> list[Manifest] | Held:
    """The source policy's Secrets (its bucket's keys and CA, the archive's
    passphrase when ``cipher``), read in its namespace, as copies for this one."""
    problems: Sequence[status.Problem] = storage.storage_problems(policy.storage, namespace)
    if cipher is not None:
        problems = [*problems, *storage.secret_problems([storage.SecretKeys(
            "spec.continuousArchiving.repositoryCipherSecretRef", cipher.name,
            (cipher.key,))], namespace)]
    if problems:
        return _stalled("BootstrapSourceSecrets", f"{field}: the source's " + "; ".join(
            p.message for p in problems))
    passphrase = None
    if cipher is not None:
        passphrase = credentials.decode(
            kube.get("v1", "Secret", cipher.name, namespace) or {})[cipher.key]
    keys = None
    creds = policy.storage.credentials_secret_ref
    if creds is not None:
        data = credentials.decode(kube.get("v1", "Secret", creds.name, namespace) or {})
        keys = (data[creds.access_key_id_key], data[creds.secret_access_key_key])
    return builders.secret_copies(t, s3_keys=keys, ca_pem=storage.ca_bundle(policy.storage,
                                                                              namespace),
                                  passphrase=passphrase)


def _copies(t: EffectiveTenant, policy: BackupPolicySpec, namespace: str) -> list[Manifest] | Held:
    archive = policy.continuous_archiving
    assert archive is not None  # physical_source() refused a policy without it
    return _storage_copies(t, policy, namespace, FIELD, archive.repository_cipher_secret_ref)
