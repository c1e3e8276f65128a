"""A tenant created from another tenant's backups (spec.bootstrap): the source's Secrets,
copied into this tenant's namespace, and the restore its primary runs (an archive)
or the runner Job that restores a dump into it.

A pod reads Secrets of its own namespace only: the source policy's S3 keys,
endpoint CA and repository passphrase are copied here for the restore, under
names of their own (never the tenant's own Secrets), and deleted once the
restore is done (reconcile/bootstrap.py).

A dump (spec.bootstrap.logical) is restored by the drill's runner
(``drill run --keep-owners --no-report``) as the superuser, into the new
primary's database by the pod's own DNS name, with the dump's owners and
grants, and verified against the backup's manifest (checksum, every table's
row count). It writes nothing into the source's bucket.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from stackforge_operator.builders import archiving, s3ca
from stackforge_operator.builders.backup import storage_access, storage_args
from stackforge_operator.builders.common import (
    RUNNER_LABEL,
    Manifest,
    labels,
    metadata,
    runner_pod,
)
from stackforge_operator.builders.postgres import superuser_connection
from stackforge_operator.models.backup import ObjectStorage
from stackforge_operator.models.common import SecretKeyRef
from stackforge_operator.models.effective import EffectiveTenant, Restore

S3_COPY: Final = "bootstrap-s3-credentials"
CA_COPY: Final = "bootstrap-s3-ca"
CIPHER_COPY: Final = "bootstrap-repository-cipher"
COPIES: Final = frozenset({S3_COPY, CA_COPY, CIPHER_COPY})
KEY_ID_KEY: Final = "access-key-id"
SECRET_KEY_KEY: Final = "secret-access-key"  # noqa: S105 - a key's name
CIPHER_KEY: Final = "passphrase"
COMPONENT: Final = "bootstrap"
DUMP_JOB: Final = "bootstrap-dump-restore"
# The runner's pods: the primary admits backup runners (builders/network.py);
# their egress is DUMP_EGRESS's (builders/backup_network.py).
DUMP_RUNNER_LABELS: Final = {RUNNER_LABEL: "backup"}
DUMP_DEADLINE_SECONDS: Final = 6 * 3600
# A restore that failed left nothing behind (one transaction): a retry is safe,
# and a primary restarting under the first attempt should not end the bootstrap.
DUMP_RETRIES: Final = 2


@dataclass(frozen=True)
class DumpRestore:
    """A dump restored into the tenant's primary: whose, which, from where (``storage``
    names this namespace's copies of the source's Secrets)."""

    source_tenant: str
    backup: str  # latest, a run id, or before=<RFC 3339> (drill run --backup)
    storage: ObjectStorage


def restore(source_tenant: str, repository_path: str, target: str,
            source_storage: ObjectStorage) -> Restore:
    """The restore as the primary runs it: the source's storage, named by the copies."""
    storage = archiving.storage_with_copies(source_storage, credentials=S3_COPY,
                                            key_id_key=KEY_ID_KEY,
                                            secret_key_key=SECRET_KEY_KEY, ca=CA_COPY)
    return Restore(source_tenant=source_tenant, repository_path=repository_path, target=target,
                   storage=storage, cipher=SecretKeyRef(name=CIPHER_COPY, key=CIPHER_KEY))


def dump_restore(source_tenant: str, backup: str, source_storage: ObjectStorage) -> DumpRestore:
    """The dump's restore as the runner runs it: the source's storage, named by the copies."""
    return DumpRestore(source_tenant, backup, archiving.storage_with_copies(
        source_storage, credentials=S3_COPY, key_id_key=KEY_ID_KEY,
        secret_key_key=SECRET_KEY_KEY, ca=CA_COPY))


def dump_restore_job(t: EffectiveTenant, dump: DumpRestore) -> Manifest:
    """The runner restoring ``dump`` into the primary's database, as the superuser (it
    sets every owner); the copies of the source's Secrets must exist beside it."""
    args = ["drill", "run", "--tenant", dump.source_tenant, *storage_args(dump.storage),
            "--backup", dump.backup, "--keep-owners", "--no-report",
            "--termination-log", "/dev/termination-log"]
    s3_variables, s3_mounts, s3_volumes = storage_access(dump.storage)
    variables = [*superuser_connection(t, t.primary_ordinal), *s3_variables]
    mounts = [{"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - a private emptyDir
              *s3_mounts]
    volumes = [{"name": "tmp", "emptyDir": {}}, *s3_volumes]
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": metadata(t, DUMP_JOB, COMPONENT),
        "spec": {
            "backoffLimit": DUMP_RETRIES,
            "activeDeadlineSeconds": DUMP_DEADLINE_SECONDS,
            "template": {
                "metadata": {"labels": {**labels(t, COMPONENT), **DUMP_RUNNER_LABELS}},
                "spec": runner_pod("restore", args, variables, mounts, volumes),
            },
        },
    }


def _secret(t: EffectiveTenant, name: str, data: Mapping[str, str]) -> Manifest:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": metadata(t, name, COMPONENT),
        "data": {k: base64.b64encode(v.encode()).decode("ascii") for k, v in sorted(data.items())},
    }


def secret_copies(t: EffectiveTenant, *, s3_keys: tuple[str, str] | None, ca_pem: str | None,
                  passphrase: str | None) -> list[Manifest]:
    """The copies ``restore`` (or ``dump_restore``: no passphrase) names: S3 keys (id,
    secret) and CA when the source has them."""
    out = [] if passphrase is None else [_secret(t, CIPHER_COPY, {CIPHER_KEY: passphrase})]
    if s3_keys is not None:
        out.append(_secret(t, S3_COPY, {KEY_ID_KEY: s3_keys[0], SECRET_KEY_KEY: s3_keys[1]}))
    if ca_pem is not None:
        out.append(_secret(t, CA_COPY, {s3ca.CA_FILE_NAME: ca_pem}))
    return out
