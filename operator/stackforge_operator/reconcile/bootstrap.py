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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from stackforge_operator import API_GROUP, API_VERSION, kube, status
from stackforge_operator.builders import bootstrap as builders
from stackforge_operator.builders import credentials
from stackforge_operator.builders.common import Manifest
from stackforge_operator.models.backup import BackupPolicySpec, BackupPolicyStatus
from stackforge_operator.models.effective import EffectiveTenant, Restore, resolve
from stackforge_operator.models.tenant import (
    BootstrapStatus,
    RecoverySource,
    StackForgeTenantSpec,
)
from stackforge_operator.reconcile import archiving_policy, drill_recovery, storage

API = f"{API_GROUP}/{API_VERSION}"
FIELD = "spec.bootstrap.recovery"


# Nothing of the tenant is applied: the rollup says why (a refusal of the restore's).
Held = drill_recovery.Refusal


@dataclass(frozen=True)
class Prepared:
    """The restore, its record, and the Secret copies it needs (none once done)."""

    restore: Restore | None
    recorded: BootstrapStatus
    copies: list[Manifest]


def _stalled(reason: str, message: str) -> Held:
    return Held(status.Progress.STALLED, reason, message)


def prepare(t: EffectiveTenant, spec: StackForgeTenantSpec, recorded: BootstrapStatus | None,
            now: datetime) -> Prepared | Held | None:
    """What the tenant's reconcile applies for its bootstrap (None: it has none)."""
    if spec.bootstrap is None:
        return None
    if recorded is not None and recorded.completion_time is not None:
        return Prepared(None, recorded, [])
    wanted = spec.bootstrap.recovery
    source = _source_tenant(wanted)
    if isinstance(source, Held):
        return source
    source_body, source_t = source
    if (mismatch := compatibility_problem(t, source_t)) is not None:
        return _stalled("BootstrapIncompatible", mismatch)
    namespace = source_body["metadata"]["namespace"]
    found = _policy(wanted, source_t, namespace)
    if isinstance(found, Held):
        return found
    policy_name, policy, observed = found
    archive = policy.continuous_archiving
    if archive is not None and t.namespace not in archive.allowed_restore_namespaces:
        return _stalled("RestoreNotAllowed", (
            f"{FIELD}: BackupPolicy {namespace}/{policy_name} does not list namespace "
            f"{t.namespace} in spec.continuousArchiving.allowedRestoreNamespaces"))
    if recorded is None:
        chosen = drill_recovery.physical_source(
            wanted.point_in_time, policy_name, policy, observed,
            field=f"{FIELD}.pointInTime", what="the restore")
        if isinstance(chosen, Held):
            return chosen
        recorded = BootstrapStatus(
            source_tenant=wanted.tenant, source_namespace=namespace, backup_policy=policy_name,
            repository_path=chosen.repository_path, recovery_target=chosen.target,
            start_time=now)
    copies = _copies(t, policy, namespace)
    if isinstance(copies, Held):
        return copies
    restore = builders.restore(recorded.source_tenant, recorded.repository_path,
                               recorded.recovery_target, policy.storage)
    return Prepared(restore, recorded, copies)


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


def completed(recorded: BootstrapStatus, primary_ready: bool, now: datetime) -> BootstrapStatus:
    """The record, with its completion once the restored primary is Ready."""
    if recorded.completion_time is not None or not primary_ready:
        return recorded
    return recorded.model_copy(update={"completion_time": now})


def rollup(recorded: BootstrapStatus | None, progress: status.Progress, reason: str,
           message: str) -> tuple[status.Progress, str, str]:
    """The tenant's rollup while its primary still carries the restore's settings.

    The reconcile that sees the restored primary Ready records the completion,
    and only the next one takes the restore's settings off the primary, which
    restarts it: Ready now would let a reader (``kubectl wait``, a person's
    psql) meet the pod as it goes away.
    """
    if recorded is None or recorded.completion_time is not None \
            or progress is not status.Progress.READY:
        return progress, reason, message
    return (status.Progress.RECONCILING, "Restored",
            f"restored from tenant {recorded.source_tenant} to "
            f"{recorded.recovery_target}: the primary restarts "
            f"without the restore's settings")


def _source_tenant(wanted: RecoverySource) -> tuple[Mapping[str, Any], EffectiveTenant] | Held:
    found = kube.list_objects(API, "StackForgeTenant",
                              field_selector=f"metadata.name={wanted.tenant}")
    if not found:
        return _stalled("BootstrapSourceNotFound",
                        f"{FIELD}.tenant: no StackForgeTenant {wanted.tenant} in the cluster")
    body = found[0]
    try:
        spec = StackForgeTenantSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return _stalled("BootstrapSourceNotFound",
                        f"{FIELD}.tenant: StackForgeTenant {wanted.tenant} has an invalid spec")
    return body, resolve(wanted.tenant, spec, namespace=body["metadata"]["namespace"])


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


def _copies(t: EffectiveTenant, policy: BackupPolicySpec, namespace: str) -> list[Manifest] | Held:
    """The source policy's Secrets, read in its namespace, as copies for this one."""
    archive = policy.continuous_archiving
    assert archive is not None  # physical_source() refused a policy without it
    cipher = archive.repository_cipher_secret_ref
    problems: Sequence[status.Problem] = storage.storage_problems(
        policy.storage, namespace) + storage.secret_problems([storage.SecretKeys(
            "spec.continuousArchiving.repositoryCipherSecretRef", cipher.name,
            (cipher.key,))], namespace)
    if problems:
        return _stalled("BootstrapSourceSecrets", f"{FIELD}: the source's " + "; ".join(
            p.message for p in problems))
    passphrase = credentials.decode(kube.get("v1", "Secret", cipher.name, namespace) or {})
    keys = None
    creds = policy.storage.credentials_secret_ref
    if creds is not None:
        data = credentials.decode(kube.get("v1", "Secret", creds.name, namespace) or {})
        keys = (data[creds.access_key_id_key], data[creds.secret_access_key_key])
    return builders.secret_copies(t, s3_keys=keys, ca_pem=storage.ca_bundle(policy.storage,
                                                                              namespace),
                                  passphrase=passphrase[cipher.key])
