"""bench/pod_restore.py's pure parts: the pods it runs and the log times it reads
(bench/pitr_drill.log_time, which its timeline reads with too)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bench.pitr_drill import log_time
from bench.pod_restore import CREDENTIALS, restore_environment, restore_pod

from stackforge_operator.builders.postgres_paths import DATA_DIR

ENV: list[dict[str, Any]] = [
    {"name": "PGDATA", "value": "/data"},
    {"name": "X", "valueFrom": {"secretKeyRef": {"name": CREDENTIALS, "key": "k"}}},
]


def _restore(pod: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = pod["spec"]["containers"][0]
    assert container["name"] == "restore"
    return container


def test_the_scratch_like_pod_restores_only_confined_on_the_pod_network() -> None:
    pod = restore_pod("pod-1", "img", ENV)
    restore = _restore(pod)
    assert restore["command"] == ["stackforge-restore"]
    assert restore["env"] == ENV
    assert restore["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["spec"]["hostNetwork"] is False
    assert len(pod["spec"]["containers"]) == 1
    assert "volumes" not in pod["spec"] and "volumeMounts" not in restore
    assert pod["spec"]["restartPolicy"] == "Never"


def test_each_variant_changes_one_thing() -> None:
    assert _restore(restore_pod("u", "img", ENV, seccomp="Unconfined"))[
        "securityContext"]["seccompProfile"] == {"type": "Unconfined"}
    assert restore_pod("h", "img", ENV, host_network=True)["spec"]["hostNetwork"] is True
    with_volume = restore_pod("e", "img", ENV, empty_dir=True)
    assert with_volume["spec"]["volumes"] == [{"name": "data", "emptyDir": {}}]
    assert _restore(with_volume)["volumeMounts"] == [{"name": "data", "mountPath": DATA_DIR}]
    beside = restore_pod("k", "img", ENV, upkeep=True)["spec"]["containers"]
    assert [c["name"] for c in beside] == ["restore", "upkeep"]
    names = {e["name"] for e in beside[1]["env"]}
    assert {"PGHOST", "RETRY_SECONDS", "STARTING_RETRY_SECONDS", "READY_MARKER"} <= names


def test_log_time_reads_the_runtimes_nanoseconds_to_the_microsecond() -> None:
    line = "2026-12-05T19:42:41.123456789Z stackforge-restore: restoring /r (stanza s) to latest"
    def at(microseconds: int) -> float:
        return datetime(2026, 12, 5, 19, 42, 41, microseconds, tzinfo=UTC).timestamp()

    assert log_time(line) == at(123456)
    assert log_time("2026-12-05T19:42:41.5Z x") == at(500000)
    assert log_time("2026-12-05T19:42:41Z x") == at(0)


def test_the_restore_reads_the_source_as_a_drills_scratch_server_does() -> None:
    through_service = {e["name"]: e for e in restore_environment(
        "bench-bucket", "/backups/_pgbackrest/rto/1-2", endpoint="s3.example.svc", port=None)}
    at_localhost = {e["name"]: e for e in restore_environment(
        "bench-bucket", "/backups/_pgbackrest/rto/1-2", endpoint="localhost", port=9000)}
    option = "STACKFORGE_RESTORE_PGBACKREST_"
    assert through_service[f"{option}REPO1_S3_ENDPOINT"]["value"] == "s3.example.svc"
    assert f"{option}REPO1_STORAGE_PORT" not in through_service
    assert at_localhost[f"{option}REPO1_S3_ENDPOINT"]["value"] == "localhost"
    assert at_localhost[f"{option}REPO1_STORAGE_PORT"]["value"] == "9000"
    assert through_service["STACKFORGE_RESTORE_TARGET"]["value"] == "latest"
    # Every secret from the bench's one Secret, none as a literal; the CA as text,
    # as a drill's scratch server gets it (no volume).
    secrets = {name: e["valueFrom"]["secretKeyRef"] for name, e in through_service.items()
               if "valueFrom" in e}
    assert {ref["name"] for ref in secrets.values()} == {CREDENTIALS}
    assert {ref["key"] for ref in secrets.values()} == {"cipher", "key-id", "secret-key", "ca"}
    assert "STACKFORGE_RESTORE_CA_PEM" in secrets
    assert not any(name.startswith("PGBACKREST_") for name in through_service)
