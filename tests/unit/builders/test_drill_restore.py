"""A Physical drill's sandbox: the tenant's database restored by its own pod, and the runner
that verifies it.

(The sandbox's network: test_drill_sandbox_network.py; every pod's security
settings: test_all_children.py; on running pods: tests/realnode/test_archiving.py.)
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from stackforge_operator.builders import backup, drill, s3ca
from stackforge_operator.drill.selection import parse_time
from stackforge_operator.models.backup import ObjectStorage
from stackforge_operator.models.drill import DRDrillSpec, Sandbox
from tests.unit.builders.tenants import container, env_of, find, secret_ref, tenant

SANDBOX, DRILL, NAMESPACE = "drill-pitr-1", "pitr", "tenant-acme"
SOURCE = drill.PhysicalSource("/backups/_pgbackrest/acme/7400-20261129T000000Z",
                              "2026-12-01T10:15:05Z")
STORAGE = ObjectStorage.model_validate({
    "bucket": "backups", "prefix": "backups", "endpoint": "https://s3.internal:9000",
    "region": "eu-west-1", "forcePathStyle": True,
    "credentialsSecretRef": {"name": "tenant-s3", "accessKeyIdKey": "id",
                             "secretAccessKeyKey": "secret"},
    "endpointCA": {"name": "tenant-ca", "key": "bundle.pem"},
})


def _restored(storage: ObjectStorage = STORAGE,
              box: Sandbox | None = None) -> list[dict[str, Any]]:
    return drill.restored_database(SANDBOX, DRILL, NAMESPACE, tenant(), box=box or Sandbox(),
                                   storage=storage, source=SOURCE, app_user="acme_app")


def _source_options(env: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """stackforge-restore's pgBackRest options of the source, by option name."""
    prefix = "STACKFORGE_RESTORE_PGBACKREST_"
    return {name.removeprefix(prefix): e for name, e in env.items() if name.startswith(prefix)}


def test_the_server_restores_the_repository_to_the_target_with_the_sandboxs_secrets() -> None:
    server = container(find(_restored(), "StatefulSet", drill.SCRATCH), "postgres")
    env = env_of(server)
    options = _source_options(env)
    assert env["STACKFORGE_RESTORE_REPOSITORY"]["value"] == SOURCE.repository_path
    assert env["STACKFORGE_RESTORE_TARGET"]["value"] == SOURCE.target
    assert env["STACKFORGE_RESTORE_STANZA"]["value"] == "acme"
    assert options["REPO1_S3_BUCKET"]["value"] == "backups"
    assert options["REPO1_S3_ENDPOINT"]["value"] == "s3.internal"
    assert options["REPO1_STORAGE_PORT"]["value"] == "9000"
    # Only the sandbox's copies: a pod cannot read the tenant namespace's Secrets.
    assert secret_ref(options["REPO1_CIPHER_PASS"]) == (drill.CIPHER_SECRET, drill.CIPHER_KEY)
    assert secret_ref(options["REPO1_S3_KEY"]) == (drill.S3_SECRET, drill.S3_KEY_ID_KEY)
    assert secret_ref(options["REPO1_S3_KEY_SECRET"]) == (drill.S3_SECRET,
                                                          drill.S3_SECRET_KEY_KEY)
    # The CA as text from the sandbox's copy, written by stackforge-restore
    # where the option names: no Secret volume.
    assert options["REPO1_STORAGE_CA_FILE"]["value"] == drill.RESTORE_CA_FILE
    assert secret_ref(env["STACKFORGE_RESTORE_CA_PEM"]) == (drill.S3_CA_SECRET,
                                                            s3ca.CA_FILE_NAME)
    # Where the tenant archives is no business of a sandbox: it archives nowhere.
    assert not {"STACKFORGE_REPOSITORY_BASE", "STACKFORGE_INCARNATION_FILE"} & set(env)
    assert not [name for name in env if name.startswith("PGBACKREST_")]
    # The image's entrypoint and server, its socket in the abstract namespace.
    assert server["args"] == ["postgres", "-c",
                              f"unix_socket_directories={drill.SCRATCH_SOCKET}"]
    assert drill.SCRATCH_SOCKET.startswith("@") and "command" not in server


def test_without_a_storage_class_the_scratch_pod_has_no_volume_at_all() -> None:
    # The kubelet starts a pod with volumes only once its looks (300 ms apart)
    # find them mounted: without any, the restore starts that much sooner.
    for objects in (_restored(), drill.scratch_database(SANDBOX, DRILL, NAMESPACE, tenant(),
                                                        Sandbox())):
        pod = find(objects, "StatefulSet", drill.SCRATCH)["spec"]["template"]["spec"]
        assert "volumes" not in pod
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            assert "volumeMounts" not in c, c["name"]
            # Data, spool, CA file and marker go to the containers' own layers.
            assert "readOnlyRootFilesystem" not in c["securityContext"], c["name"]
    upkeep = container(find(_restored(), "StatefulSet", drill.SCRATCH), "upkeep")
    assert env_of(upkeep)["PGHOST"]["value"] == drill.SCRATCH_SOCKET


def test_without_keys_or_ca_the_pods_identity_reaches_the_bucket() -> None:
    plain = ObjectStorage.model_validate({"bucket": "backups", "region": "eu-west-1"})
    server = container(find(_restored(plain), "StatefulSet", drill.SCRATCH), "postgres")
    options = _source_options(env_of(server))
    assert options["REPO1_S3_KEY_TYPE"]["value"] == "auto"
    assert options["REPO1_S3_ENDPOINT"]["value"] == "s3.eu-west-1.amazonaws.com"
    assert "REPO1_STORAGE_CA_FILE" not in options
    assert "STACKFORGE_RESTORE_CA_PEM" not in env_of(server)


def test_the_pod_is_ready_once_the_restored_roles_take_the_scratch_password() -> None:
    upkeep = container(find(_restored(), "StatefulSet", drill.SCRATCH), "upkeep")
    env = env_of(upkeep)
    for role in ("POSTGRES", "APP", "REPLICATION"):
        assert secret_ref(env[f"{role}_PASSWORD"]) == (drill.SCRATCH_SECRET, "password")
    assert (env["POSTGRES_USER"]["value"], env["APP_USER"]["value"],
            env["REPLICATION_USER"]["value"]) == ("postgres", "acme_app", "replicator")
    marker = env["READY_MARKER"]["value"]
    assert upkeep["readinessProbe"]["exec"]["command"] == ["test", "-e", marker]
    # The marker implies the server answers: the server runs no probe of its
    # own, a runc exec every period beside the restore.
    server = container(find(_restored(), "StatefulSet", drill.SCRATCH), "postgres")
    assert not {"readinessProbe", "livenessProbe", "startupProbe"} & set(server)
    assert float(env["RETRY_SECONDS"]["value"]) < 1
    # Once the server's socket is there (start-up, replay, promotion) it asks faster.
    assert float(env["STARTING_RETRY_SECONDS"]["value"]) < float(env["RETRY_SECONDS"]["value"])
    # No slots, admin accounts or isolation in a sandbox.
    assert not {"SLOTS_FILE", "ADMIN_ACCOUNTS_FILE", "ISOLATION_FILE"} & set(env)


def test_the_runner_reaches_the_restored_server_before_its_pod_is_ready() -> None:
    # The scratch password is the gate (above), not the pod's readiness: the
    # runner connects the moment it works. A dump's scratch database, which the
    # operator waits for before the runner starts, keeps the usual Service.
    restored = find(_restored(), "Service", drill.SCRATCH)["spec"]
    assert restored["publishNotReadyAddresses"] is True
    assert restored["selector"] == find(_restored(), "StatefulSet", drill.SCRATCH)[
        "spec"]["selector"]["matchLabels"]
    empty = drill.scratch_database(SANDBOX, DRILL, NAMESPACE, tenant(), Sandbox())
    assert "publishNotReadyAddresses" not in find(empty, "Service", drill.SCRATCH)["spec"]


def test_the_sandboxs_storage_class_and_resources_reach_the_scratch_server() -> None:
    box = Sandbox.model_validate({
        "storageClassName": "fast-ssd",
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}})
    t = tenant()
    for objects in (_restored(box=box),
                    drill.scratch_database(SANDBOX, DRILL, NAMESPACE, t, box)):
        pod = find(objects, "StatefulSet", drill.SCRATCH)["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        claim = volumes["data"]["ephemeral"]["volumeClaimTemplate"]["spec"]
        assert claim == {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast-ssd",
                         "resources": {"requests": {"storage": t.postgres.storage}}}
        server = container(find(objects, "StatefulSet", drill.SCRATCH), "postgres")
        assert server["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"},
                                       "limits": {"memory": "2Gi"}}
        assert server["volumeMounts"] == [{"name": "data", "mountPath": "/var/lib/postgresql/data"}]
        assert [v["name"] for v in pod["volumes"]] == ["data"]
    # Unset: the node's disk (the container's layer, above), and best effort.
    for objects in (_restored(), drill.scratch_database(SANDBOX, DRILL, NAMESPACE, t,
                                                        Sandbox())):
        assert "resources" not in container(find(objects, "StatefulSet", drill.SCRATCH),
                                            "postgres")


def test_the_cipher_passphrase_is_copied_only_when_given() -> None:
    copies = drill.secrets(SANDBOX, DRILL, NAMESPACE, "pw", {}, None, "s3cr3t-phrase")
    cipher = find(copies, "Secret", drill.CIPHER_SECRET)
    assert base64.b64decode(cipher["data"][drill.CIPHER_KEY]) == b"s3cr3t-phrase"
    assert drill.CIPHER_SECRET not in {
        s["metadata"]["name"] for s in drill.secrets(SANDBOX, DRILL, NAMESPACE, "pw", {})}
    assert drill.CIPHER_SECRET in drill.OWN_SECRETS


def _job(physical: drill.PhysicalSource | None,
         started_at: datetime = datetime(2026, 12, 1, tzinfo=UTC),
         checks: dict[str, Any] | None = None) -> dict[str, Any]:
    spec = DRDrillSpec.model_validate({"tenantRef": {"name": "acme"},
                                       "checks": checks or {"rowCounts": False}})
    return drill.restore_job(
        SANDBOX, DRILL, NAMESPACE, spec, tenant(), storage={"bucket": "backups"},
        backup_id="latest", started_at=started_at,
        rto_seconds=3600, rpo_seconds=60, with_s3_keys=True, physical=physical)


def test_the_runner_measures_the_rto_from_the_runs_start_with_its_fraction() -> None:
    # In whole seconds the start was floored, and every RTO overstated by up to one.
    started = datetime(2026, 12, 1, 9, 30, 5, 873000, tzinfo=UTC)
    args = container(_job(SOURCE, started))["args"]
    given = args[args.index("--started-at") + 1]
    assert given == "2026-12-01T09:30:05.873000Z"
    assert parse_time(given) == started


def test_the_physical_runner_verifies_the_tenants_database_at_the_target() -> None:
    runner = container(_job(SOURCE))
    args = runner["args"]
    assert args[args.index("--recovery-target") + 1] == SOURCE.target
    assert args[args.index("--repository") + 1] == SOURCE.repository_path
    # It starts with the restore and waits for it as long as the sandbox lives,
    # but the time its report needs before the Job's deadline; so does the
    # launcher that starts it once the server listens.
    assert args[args.index("--wait-seconds") + 1] == "3570"
    # A short TTL keeps three quarters of itself for the wait.
    assert (drill.restored_wait_seconds(60), drill.restored_wait_seconds(100)) == (45, 75)
    assert "--backup" not in args and "--no-row-counts" not in args
    # A throw-away copy: its checks' login is granted the schemas, never pg_read_all_data.
    assert "--checks-read" not in args
    assert env_of(runner)["PGDATABASE"]["value"] == tenant().postgres.database
    logical = container(_job(None))
    assert logical["args"][logical["args"].index("--backup") + 1] == "latest"
    # A dump's runner asks a Ready scratch database again while its own pod is refused.
    assert logical["args"][logical["args"].index("--wait-seconds") + 1] == str(
        backup.CONNECT_WAIT_SECONDS)
    assert "--no-row-counts" in logical["args"]
    assert env_of(logical)["PGDATABASE"]["value"] == drill.SCRATCH_DATABASE


def test_checksum_false_reaches_a_dumps_runner() -> None:
    # It was dropped on the way: every dump drill compared the checksum.
    assert "--no-checksum" not in container(_job(None))["args"]
    assert "--no-checksum" in container(_job(None, checks={"checksum": False}))["args"]
    # A physical drill has no dump: nothing to skip.
    assert "--no-checksum" not in container(_job(SOURCE, checks={"checksum": False}))["args"]


def test_the_physical_runner_starts_its_python_only_once_the_restored_server_listens() -> None:
    # In the middle of the restore, the runner's start took CPU from it.
    runner = container(_job(SOURCE))
    assert runner["command"] == ["python", "-m", "stackforge_operator.drill.await_server",
                                 "3570", "stackforge-operator"]
    assert runner["args"][:2] == ["drill", "run"]
    # A dump's runner starts once the scratch database is Ready: nothing to wait for.
    assert container(_job(None))["command"] == ["stackforge-operator"]


def test_a_new_sandbox_is_made_namespace_first_and_pods_last_the_rest_at_once() -> None:
    expires = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    objects = [
        drill.namespace(SANDBOX, DRILL, NAMESPACE, expires),
        drill.network_policy(SANDBOX, DRILL, NAMESPACE, "tenant-acme", None),
        *drill.secrets(SANDBOX, DRILL, NAMESPACE, "scratch", {"AWS_ACCESS_KEY_ID": "id"},
                       "-----BEGIN CERTIFICATE-----", "passphrase"),
        *_restored(),
        drill.runner_account(SANDBOX, DRILL, NAMESPACE),
        drill.checks_config(SANDBOX, DRILL, NAMESPACE, DRDrillSpec.model_validate(
            {"tenantRef": {"name": "acme"}, "backupPolicyRef": {"name": "nightly"}})),
    ]
    waves = drill.sandbox_waves(objects)
    kinds = [sorted({o["kind"] for o in wave}) for wave in waves]
    assert kinds == [["Namespace"],
                     ["ConfigMap", "NetworkPolicy", "Secret", "Service", "ServiceAccount"],
                     ["StatefulSet"]]
    # Every object once; the scratch pod's every Secret is made a wave before it.
    assert sorted(map(id, (o for wave in waves for o in wave))) == sorted(map(id, objects))
    pod = find(_restored(), "StatefulSet", drill.SCRATCH)["spec"]["template"]["spec"]
    referenced = {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v} | {
        secret_ref(e)[0] for c in pod["containers"] for e in c["env"]
        if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]}
    assert referenced <= {o["metadata"]["name"] for o in waves[1] if o["kind"] == "Secret"}


def test_the_report_is_named_after_the_sandbox_not_the_second_the_run_began() -> None:
    """Two drills of one tenant started in the same second wrote one report key
    (``drills/<run id>.json``): the second overwrote the first's evidence."""
    started = datetime(2026, 12, 1, 9, 30, 5, tzinfo=UTC)
    run_id = started.strftime("%Y%m%dT%H%M%SZ")
    names = set()
    for drill_name, uid in (("nightly", "uid-1"), ("weekly", "uid-2"), ("nightly", "uid-3")):
        sandbox = drill.sandbox_name(drill_name, run_id, uid)
        spec = DRDrillSpec.model_validate({"tenantRef": {"name": "acme"}})
        args = container(drill.restore_job(
            sandbox, drill_name, NAMESPACE, spec, tenant(), storage={"bucket": "backups"},
            backup_id="latest", started_at=started, rto_seconds=3600, rpo_seconds=60,
            with_s3_keys=True))["args"]
        names.add(args[args.index("--run-id") + 1])
    assert len(names) == 3, names
