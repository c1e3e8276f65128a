"""A tenant created from another's archive: the Secret copies and its primary's restore.

(Resolution against the cluster and the restore itself, on running pods:
tests/realnode/test_archiving.py.)
"""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from stackforge_operator.builders import archiving, bootstrap, postgres, s3ca
from stackforge_operator.models.backup import ObjectStorage
from stackforge_operator.models.common import SecretKeyRef
from stackforge_operator.models.effective import Archiving
from stackforge_operator.models.tenant import BootstrapStatus
from stackforge_operator.reconcile.bootstrap import compatibility_problem, completed
from tests.unit.builders.tenants import container, env_of, find, secret_ref, tenant

SOURCE_STORAGE = ObjectStorage.model_validate({
    "bucket": "source-backups", "prefix": "backups", "endpoint": "https://s3.internal:9000",
    "region": "eu-west-1", "forcePathStyle": True,
    "credentialsSecretRef": {"name": "source-s3", "accessKeyIdKey": "id",
                             "secretAccessKeyKey": "secret"},
    "endpointCA": {"name": "source-ca", "key": "bundle.pem"},
})
REPOSITORY = "/backups/_pgbackrest/acme/7400-20261129T000000Z"
RESTORE = bootstrap.restore("acme", REPOSITORY, "2026-12-01T10:15:05Z", SOURCE_STORAGE)


def _primary_server(*, archived: bool) -> dict[str, Any]:
    t = replace(tenant(name="acme-past"), restore=RESTORE)
    if archived:
        own = ObjectStorage.model_validate({
            "bucket": "own-backups", "endpoint": "https://s3.internal:9000",
            "credentialsSecretRef": {"name": "own-s3"}, "endpointCA": {"name": "own-ca"}})
        t = replace(t, archiving=Archiving(policy="nightly", storage=own,
                                           archive_timeout_seconds=60,
                                           cipher=SecretKeyRef(name="own-cipher", key="k")))
    return container(find(postgres.build(t), "StatefulSet", postgres.NAME), "postgres")


def test_the_restore_names_only_the_copies_in_the_tenants_namespace() -> None:
    creds, ca = RESTORE.storage.credentials_secret_ref, RESTORE.storage.endpoint_ca
    assert creds is not None and ca is not None
    assert {creds.name, ca.name, RESTORE.cipher.name} == set(bootstrap.COPIES)
    assert RESTORE.storage.bucket == "source-backups" and RESTORE.source_tenant == "acme"


def test_the_copies_hold_the_sources_values_under_fixed_keys() -> None:
    t = tenant(name="acme-past")
    copies = bootstrap.secret_copies(t, s3_keys=("AKID", "shh"), ca_pem="PEM", passphrase="pp")
    decoded = {c["metadata"]["name"]: {k: base64.b64decode(v).decode()
                                       for k, v in c["data"].items()} for c in copies}
    assert decoded == {
        bootstrap.CIPHER_COPY: {bootstrap.CIPHER_KEY: "pp"},
        bootstrap.S3_COPY: {bootstrap.KEY_ID_KEY: "AKID", bootstrap.SECRET_KEY_KEY: "shh"},
        bootstrap.CA_COPY: {s3ca.CA_FILE_NAME: "PEM"},
    }
    assert all(c["metadata"]["namespace"] == t.namespace for c in copies)
    assert [c["metadata"]["name"] for c in bootstrap.secret_copies(
        t, s3_keys=None, ca_pem=None, passphrase="pp")] == [bootstrap.CIPHER_COPY]


def test_the_primary_restores_the_source_beside_its_own_archive() -> None:
    server = _primary_server(archived=True)
    env = env_of(server)
    prefix = archiving.RESTORE_OPTION_PREFIX + "PGBACKREST_"
    assert env["STACKFORGE_RESTORE_REPOSITORY"]["value"] == REPOSITORY
    assert env["STACKFORGE_RESTORE_STANZA"]["value"] == "acme"
    assert env[f"{prefix}REPO1_S3_BUCKET"]["value"] == "source-backups"
    assert secret_ref(env[f"{prefix}REPO1_S3_KEY"]) == (bootstrap.S3_COPY, bootstrap.KEY_ID_KEY)
    assert secret_ref(env[f"{prefix}REPO1_CIPHER_PASS"]) == (bootstrap.CIPHER_COPY,
                                                            bootstrap.CIPHER_KEY)
    # Its own archive keeps its own options, CA file and stanza.
    assert env["PGBACKREST_REPO1_S3_BUCKET"]["value"] == "own-backups"
    assert env["PGBACKREST_STANZA"]["value"] == "acme-past"
    own_ca = env["PGBACKREST_REPO1_STORAGE_CA_FILE"]["value"]
    source_ca = env[f"{prefix}REPO1_STORAGE_CA_FILE"]["value"]
    assert own_ca == s3ca.CA_PATH and source_ca.startswith(archiving.RESTORE_CA_DIR + "/")
    mounts = {m["mountPath"]: m["name"] for m in server["volumeMounts"]}
    assert mounts[archiving.RESTORE_CA_DIR] == archiving.RESTORE_CA_VOLUME
    assert mounts[s3ca.CA_DIR] == s3ca.CA_VOLUME


def test_without_a_restore_the_primary_has_none_of_its_settings() -> None:
    t = tenant(name="acme-past")
    server = container(find(postgres.build(t), "StatefulSet", postgres.NAME), "postgres")
    assert not [n for n in env_of(server) if n.startswith("STACKFORGE_RESTORE")]


def test_the_source_must_have_the_same_major_version_and_database() -> None:
    source = tenant(name="acme")
    assert compatibility_problem(tenant(name="acme-past"), source) is None
    other = tenant({"components": {"postgres": {"version": 16}}}, name="acme-past")
    assert "keeps its major version" in (compatibility_problem(other, source) or "")
    renamed = tenant({"components": {"postgres": {"database": "other"}}}, name="acme-past")
    assert "set spec.components.postgres.database to it" in (
        compatibility_problem(renamed, source) or "")


def test_the_restore_is_done_once_the_primary_is_first_ready() -> None:
    started = datetime(2026, 12, 1, 10, tzinfo=UTC)
    recorded = BootstrapStatus(source_tenant="acme", source_namespace="tenant-acme",
                               backup_policy="nightly", repository_path=REPOSITORY,
                               recovery_target="latest", start_time=started)
    assert completed(recorded, False, started).completion_time is None
    done = completed(recorded, True, started.replace(minute=5))
    assert done.completion_time == started.replace(minute=5)
    assert completed(done, True, started.replace(minute=9)).completion_time == (
        started.replace(minute=5))


def test_a_dump_is_restored_by_the_runner_into_the_primary_keeping_owners() -> None:
    dump = bootstrap.dump_restore("acme", "before=2026-12-01T02:30:00Z", SOURCE_STORAGE)
    t = replace(tenant(name="acme-copy"), primary_ordinal=0)
    job = bootstrap.dump_restore_job(t, dump)
    assert job["metadata"]["name"] == bootstrap.DUMP_JOB
    assert job["metadata"]["namespace"] == t.namespace
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"]["stackforge.io/runner"] == "backup"
    runner = pod["spec"]["containers"][0]
    args = runner["args"]
    assert args[:4] == ["drill", "run", "--tenant", "acme"]
    assert args[args.index("--backup") + 1] == "before=2026-12-01T02:30:00Z"
    assert {"--keep-owners", "--no-report"} <= set(args)
    assert args[args.index("--bucket") + 1] == "source-backups"
    env = env_of(runner)
    assert env["PGHOST"]["value"] == f"postgres-0.postgres-headless.{t.namespace}.svc"
    assert env["PGUSER"]["value"] == "postgres"
    # Secrets by reference only, and only the copies in the new tenant's namespace.
    assert secret_ref(env["PGPASSWORD"])[0] == "postgres-credentials"
    assert secret_ref(env["AWS_SECRET_ACCESS_KEY"]) == (
        bootstrap.S3_COPY, bootstrap.SECRET_KEY_KEY)
    assert not {v.get("value") for k, v in env.items() if "PASSWORD" in k or "SECRET" in k} - {
        None}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes[s3ca.CA_VOLUME]["secret"]["secretName"] == bootstrap.CA_COPY
    # A dump needs no repository passphrase.
    assert [c["metadata"]["name"] for c in bootstrap.secret_copies(
        t, s3_keys=("id", "s"), ca_pem="PEM", passphrase=None)] == [
        bootstrap.S3_COPY, bootstrap.CA_COPY]
