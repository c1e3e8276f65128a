from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from stackforge_operator.builders import postgres
from stackforge_operator.builders import secrets_names as sn
from stackforge_operator.builders.common import (
    POSTGRES_PORT,
    STARTUP_PROBE_PERIOD_SECONDS,
    selector_labels,
)
from stackforge_operator.models.effective import Isolation
from tests.unit.builders.image_programs import IMAGES, script_required, script_variables
from tests.unit.builders.tenants import container, env_of, find, names, secret_ref, tenant

IMAGE = IMAGES / "postgres"


def test_disabled_postgres_builds_nothing() -> None:
    assert postgres.build(tenant({"components": {"postgres": {"enabled": False}}})) == []


def test_primary_statefulset() -> None:
    t = tenant()
    sts = find(postgres.build(t), "StatefulSet", "postgres")
    spec = sts["spec"]
    assert spec["replicas"] == 1
    assert spec["serviceName"] == "postgres-headless"
    # Written out: without it the controller makes a missing pod from the template
    # the StatefulSet is leaving (reconcile/recovery.py moves the primary's number).
    assert spec["updateStrategy"] == {"type": "RollingUpdate",
                                      "rollingUpdate": {"partition": 0}}
    c = container(sts, "postgres")
    assert c["image"] == "stackforge/postgres:15"
    env = env_of(c)
    pgdata = env["PGDATA"]["value"]
    data_mount = next(m for m in c["volumeMounts"] if m["name"] == "data")["mountPath"]
    assert pgdata.startswith(data_mount + "/")
    assert c["readinessProbe"]["exec"]["command"][0] == "pg_isready"
    # Ready within a second of answering at each start, not at the next period;
    # and a start that takes hours (crash recovery, replay) is never killed.
    startup = c["startupProbe"]
    assert startup["exec"] == c["readinessProbe"]["exec"]
    assert startup["timeoutSeconds"] == c["readinessProbe"]["timeoutSeconds"]
    assert startup["periodSeconds"] == STARTUP_PROBE_PERIOD_SECONDS == 1
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 7 * 24 * 3600
    assert "livenessProbe" not in c
    [claim] = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert spec["template"]["spec"]["securityContext"]["runAsUser"] == 999
    # No recursive chown of the data volume at every start (PGDATA must stay 0700).
    assert spec["template"]["spec"]["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/var/run/postgresql", "/tmp"} <= mounts
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["run"] and "emptyDir" in volumes["tmp"]


def test_storage_class_is_left_to_the_cluster_default_when_unset() -> None:
    t = tenant({"components": {"postgres": {"storageClassName": None}}})
    [claim] = find(postgres.build(t), "StatefulSet", "postgres")["spec"]["volumeClaimTemplates"]
    assert "storageClassName" not in claim["spec"]


def test_major_version_picks_the_image() -> None:
    t = tenant({"components": {"postgres": {"version": 17}}})
    assert (
        container(find(postgres.build(t), "StatefulSet", "postgres"), "postgres")["image"]
        == "stackforge/postgres:17"
    )


def test_credentials_come_from_the_secret() -> None:
    env = env_of(container(find(postgres.build(tenant()), "StatefulSet", "postgres"), "postgres"))
    assert secret_ref(env["POSTGRES_PASSWORD"]) == (
        sn.POSTGRES_SECRET,
        sn.POSTGRES_SUPERUSER_PASSWORD_KEY,
    )
    assert secret_ref(env["APP_PASSWORD"]) == (sn.POSTGRES_SECRET, sn.POSTGRES_PASSWORD_KEY)
    assert secret_ref(env["REPLICATION_PASSWORD"]) == (
        sn.POSTGRES_SECRET,
        sn.POSTGRES_REPLICATION_PASSWORD_KEY,
    )
    assert env["POSTGRES_DB"]["value"] == "acme"


def test_services() -> None:
    objs = postgres.build(tenant())
    headless = find(objs, "Service", "postgres-headless")["spec"]
    client = find(objs, "Service", "postgres")["spec"]
    assert headless["clusterIP"] == "None"
    assert client["type"] == "ClusterIP"
    for spec in (headless, client):
        assert spec["selector"] == selector_labels(tenant(), "postgres")
        assert [p["port"] for p in spec["ports"]] == [POSTGRES_PORT]


def test_pg_hba_takes_passwords_only_and_replication_only_for_its_role() -> None:
    cm = find(postgres.build(tenant()), "ConfigMap", "postgres-init")
    hba = cm["data"]["pg_hba.conf"]
    assert any(
        line.split()[:3] == ["host", "replication", postgres.REPLICATION_USER]
        for line in hba.splitlines()
    )
    assert "trust" not in hba
    c = container(find(postgres.build(tenant()), "StatefulSet", "postgres"), "postgres")
    assert f"hba_file={postgres.HBA_FILE}" in c["args"]


def test_the_primary_gives_the_images_roles_script_what_it_reads() -> None:
    # The entrypoint runs initdb.d/10-stackforge-roles.sh with the server's
    # environment: every variable it reads must be there, passwords by reference.
    c = container(find(postgres.build(tenant()), "StatefulSet", "postgres"), "postgres")
    env = env_of(c)
    assert script_variables(IMAGE / "initdb.d" / "10-stackforge-roles.sh") <= set(env)
    for var in ("APP_PASSWORD", "REPLICATION_PASSWORD"):
        assert "valueFrom" in env[var]


def test_no_read_replicas_means_no_replica_objects() -> None:
    objs = postgres.build(tenant({"components": {"postgres": {"readReplicas": 0}}}))
    assert names(objs, "StatefulSet") == ["postgres"]
    assert names(objs, "Service") == ["postgres", "postgres-headless"]


def test_read_replicas_stream_from_the_primary() -> None:
    t = tenant({"components": {"postgres": {"readReplicas": 2}}})
    objs = postgres.build(t)
    sts = find(objs, "StatefulSet", "postgres-replica")
    assert sts["spec"]["replicas"] == 2
    pod = sts["spec"]["template"]["spec"]
    # The server's container clones at its start, then runs the image's entrypoint.
    assert "initContainers" not in pod
    server = container(sts)
    assert server["command"] == [postgres.CLONE_PROGRAM, postgres.ENTRYPOINT]
    assert f'ENTRYPOINT ["{postgres.ENTRYPOINT}"]' in (IMAGE / "Containerfile").read_text()
    assert script_required(IMAGE / "stackforge-clone-replica.sh") <= set(env_of(server))
    assert env_of(server)["PRIMARY_HOST"]["value"] == postgres.NAME
    assert secret_ref(env_of(server)["PGPASSWORD"]) == (
        sn.POSTGRES_SECRET,
        sn.POSTGRES_REPLICATION_PASSWORD_KEY,
    )
    conninfo = next(a for a in server["args"] if a.startswith("primary_conninfo="))
    assert "host=postgres " in conninfo and "password" not in conninfo
    assert secret_ref(env_of(server)["PGPASSWORD"])[1] == sn.POSTGRES_REPLICATION_PASSWORD_KEY
    read = find(objs, "Service", "postgres-read")
    assert read["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]
    assert read["spec"]["selector"] != selector_labels(t, "postgres")


def test_each_replica_streams_through_a_slot_the_primary_keeps() -> None:
    t = tenant({"components": {"postgres": {"readReplicas": 2}}})
    objs = postgres.build(t)
    config = find(objs, "ConfigMap", "postgres-init")["data"]
    assert config[postgres.SLOTS_KEY] == "postgres_replica_0\npostgres_replica_1\n"
    # The primary's sidecar reads the list from the mounted ConfigMap.
    upkeep = container(find(objs, "StatefulSet", "postgres"), "upkeep")
    slots_file = env_of(upkeep)["SLOTS_FILE"]["value"]
    [config_mount] = [m for m in upkeep["volumeMounts"] if m["name"] == "config"]
    assert slots_file == f"{config_mount['mountPath']}/{postgres.SLOTS_KEY}"
    assert env_of(upkeep)["SLOT_PREFIX"]["value"] == postgres.SLOT_PREFIX
    # Replica N names slot postgres_replica_N, from the ordinal the StatefulSet
    # controller puts on its pod, in the server's settings and for its clone.
    sts = find(objs, "StatefulSet", "postgres-replica")
    server = container(sts)
    index = env_of(server)["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert index == "metadata.labels['apps.kubernetes.io/pod-index']"
    names_ = [e["name"] for e in server["env"]]
    assert names_.index("POD_INDEX") < names_.index("REPLICATION_SLOT")
    assert "primary_slot_name=postgres_replica_$(POD_INDEX)" in server["args"]
    assert env_of(server)["REPLICATION_SLOT"]["value"] == "postgres_replica_$(POD_INDEX)"
    # Ready only while streaming; restarted (and so cloned anew) only on the
    # liveness program's proof, which it gathers over several probes itself.
    assert server["readinessProbe"]["exec"]["command"] == [postgres.REPLICA_READY_PROGRAM]
    liveness = server["livenessProbe"]
    assert liveness["exec"]["command"] == [postgres.REPLICA_FOLLOWS_PROGRAM]
    # No startup probe: it would hold the liveness probe back until the copy is
    # first ready, and a copy that never can be would then never be cloned anew.
    assert "startupProbe" not in server
    assert liveness["failureThreshold"] == 2
    assert liveness["timeoutSeconds"] > 8  # the program bounds itself to 2 x (2 s + 2 s)
    assert script_required(IMAGE / "stackforge-replica-follows.sh") <= set(env_of(server))
    assert f"{postgres.RECLONE_MESSAGE_PREFIX}%s" in (
        IMAGE / "stackforge-replica-follows.sh").read_text()


def test_slots_may_hold_back_a_fifth_of_the_primarys_volume_without_a_restart() -> None:
    def limit(storage: str) -> str:
        t = tenant({"components": {"postgres": {"storage": storage}}})
        return str(find(postgres.build(t), "ConfigMap", "postgres-init")["data"][
            postgres.SLOT_WAL_LIMIT_KEY])

    assert limit("50Gi") == "10240"  # megabytes, max_slot_wal_keep_size's unit
    assert limit("1Gi") == "204"
    assert limit("100Mi") == "64"  # never less
    upkeep = container(find(postgres.build(tenant()), "StatefulSet", "postgres"), "upkeep")
    assert env_of(upkeep)["SLOT_WAL_LIMIT_FILE"]["value"] == (
        f"{postgres.CONFIG_DIR}/{postgres.SLOT_WAL_LIMIT_KEY}")

    # A bigger volume changes the limit, never the primary's pod template.
    def template(storage: str) -> object:
        t = tenant({"components": {"postgres": {"storage": storage}}})
        return find(postgres.build(t), "StatefulSet", "postgres")["spec"]["template"]

    assert template("50Gi") == template("80Gi")


def test_no_replicas_no_slots() -> None:
    t = tenant({"components": {"postgres": {"readReplicas": 0}}})
    config = find(postgres.build(t), "ConfigMap", "postgres-init")["data"]
    assert config[postgres.SLOTS_KEY] == ""


def test_replica_count_never_touches_the_primary() -> None:
    primaries = [
        find(
            postgres.build(tenant({"components": {"postgres": {"readReplicas": n}}})),
            "StatefulSet",
            "postgres",
        )
        for n in (0, 1, 3)
    ]
    assert primaries[0] == primaries[1] == primaries[2]


def test_replica_count_only_changes_replicas() -> None:
    def replica_set(n: int) -> dict[str, object]:
        t = tenant({"components": {"postgres": {"readReplicas": n}}})
        sts = find(postgres.build(t), "StatefulSet", "postgres-replica")
        return {k: v for k, v in sts["spec"].items() if k != "replicas"}

    assert replica_set(1) == replica_set(4)


def test_suspend_keeps_volumes() -> None:
    objs = postgres.build(
        tenant({"suspend": True, "components": {"postgres": {"readReplicas": 1}}})
    )
    for name in ("postgres", "postgres-replica"):
        spec = find(objs, "StatefulSet", name)["spec"]
        assert spec["replicas"] == 0
        assert spec["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"


def test_role_passwords_are_synced_from_the_secret_at_every_start() -> None:
    objs = postgres.build(tenant())
    sync = container(find(objs, "StatefulSet", "postgres"), "upkeep")
    env = env_of(sync)
    for var, key in (
        ("POSTGRES_PASSWORD", sn.POSTGRES_SUPERUSER_PASSWORD_KEY),
        ("APP_PASSWORD", sn.POSTGRES_PASSWORD_KEY),
        ("REPLICATION_PASSWORD", sn.POSTGRES_REPLICATION_PASSWORD_KEY),
    ):
        assert secret_ref(env[var]) == (sn.POSTGRES_SECRET, key)
    assert sync["command"] == [postgres.UPKEEP_PROGRAM]
    assert script_required(IMAGE / "stackforge-primary-upkeep.sh") <= set(env)
    assert env["READY_MARKER"]["value"] == postgres.SYNCED_MARKER
    # It logs in by peer over the pod-private socket, so a rotated superuser
    # password cannot lock it out.
    hba = find(objs, "ConfigMap", "postgres-init")["data"]["pg_hba.conf"]
    assert hba.splitlines()[1].split() == ["local", "all", "postgres", "peer"]
    assert sync["readinessProbe"]["exec"]["command"] == ["test", "-e", postgres.SYNCED_MARKER]
    assert sync["startupProbe"]["exec"] == sync["readinessProbe"]["exec"]
    assert sync["startupProbe"]["periodSeconds"] == STARTUP_PROBE_PERIOD_SECONDS


def test_isolation_reaches_the_primarys_sidecar_without_a_restart() -> None:
    began = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    timed = Isolation(began, began + timedelta(seconds=10))

    def config_and_template(isolate: bool, isolation: Isolation | None) -> tuple[str, object]:
        objs = postgres.build(replace(tenant({"isolate": isolate}), isolation=isolation))
        config = find(objs, "ConfigMap", "postgres-init")["data"][postgres.ISOLATION_KEY]
        return config, find(objs, "StatefulSet", "postgres")["spec"]["template"]

    # Sessions begun before the moment (seconds since the epoch) are closed.
    assert config_and_template(True, timed)[0] == str(int(began.timestamp()) + 10)
    # Not timed by a reconcile: every network session.
    assert config_and_template(True, None)[0] == "all"
    assert config_and_template(False, None)[0] == ""
    # The file changes under the running sidecar: the pod template does not.
    assert config_and_template(True, timed)[1] == config_and_template(False, None)[1]
    assert postgres.isolation_value(replace(tenant({"isolate": False}), isolation=timed)) is None
    upkeep = container(find(postgres.build(tenant()), "StatefulSet", "postgres"), "upkeep")
    assert env_of(upkeep)["ISOLATION_FILE"]["value"] == (
        f"{postgres.CONFIG_DIR}/{postgres.ISOLATION_KEY}")


def test_the_primary_is_touched_with_versions_of_its_live_files_never_their_contents() -> None:
    def obj(version: str) -> dict[str, object]:
        return {"metadata": {"resourceVersion": version}, "data": {"k": "c2VjcmV0"}}

    assert postgres.live_files_version(obj("7"), obj("9")) == (
        "postgres-init=7 postgres-admin-roles=9")
    assert postgres.live_files_version(None, obj("9")) is None
    assert postgres.live_files_version(obj("7"), None) is None
