"""images/kafka/stackforge-kafka-start.sh on the host, with the environment the
operator's StatefulSet gives it (builders/kafka.py).

The broker itself runs in tests/realnode/test_kafka.py; here the script's own
work is checked: the properties it renders, the variables it refuses, and the
order of its two java commands (a ``java`` on the PATH that records them).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from stackforge_operator.builders import kafka
from tests.unit.builders.tenants import container, find, tenant

START = Path(__file__).resolve().parents[2] / "images" / "kafka" / "stackforge-kafka-start.sh"


def operator_environment(ordinal: int = 1) -> dict[str, str]:
    """The kafka container's environment as the kubelet hands it over for pod
    ``kafka-<ordinal>`` of a three-node tenant."""
    sts = find(kafka.build(tenant({"components": {"kafka": {"enabled": True, "replicas": 3}}})),
               "StatefulSet", "kafka")
    values: dict[str, str] = {}
    for entry in container(sts, "kafka")["env"]:
        if "value" in entry:
            values[entry["name"]] = entry["value"]
        elif entry["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name":
            values[entry["name"]] = f"kafka-{ordinal}"
        else:  # the pod-index label
            values[entry["name"]] = str(ordinal)
    # The kubelet expands $(VAR) references to earlier variables.
    return {k: v.replace("$(POD_NAME)", values["POD_NAME"]) for k, v in values.items()}


def run(env: dict[str, str], *args: str, path: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    base = {"PATH": path or os.environ["PATH"], "LANG": "C.UTF-8"}
    return subprocess.run(["sh", str(START), *args], env={**base, **env},
                          capture_output=True, text=True, check=False, timeout=30)


def properties(text: str) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in text.splitlines()
             if line and not line.startswith("#")]
    return {k: v for k, v in pairs}


def test_the_operators_environment_becomes_the_brokers_properties() -> None:
    env = operator_environment(ordinal=1)
    result = run({**env, "KAFKA_HEAP_OPTS": "-Xmx1g", "KAFKA_OPTS": "-Dx=1"}, "--print-config")
    assert result.returncode == 0, result.stderr
    rendered = properties(result.stdout)
    assert rendered["node.id"] == "1"
    assert rendered["process.roles"] == "broker,controller"
    assert rendered["controller.quorum.voters"] == env[kafka.VOTERS_VARIABLE]
    assert rendered["advertised.listeners"] == (
        "PLAINTEXT://kafka-1.kafka-headless.tenant-acme.svc:9092")
    assert rendered["log.dirs"] == kafka.LOG_DIR
    assert rendered["min.insync.replicas"] == "2"
    # How the JVM runs is not a broker setting; the pod's own variables neither.
    assert not {"heap.opts", "opts", "pod.name", "cluster.id"} & set(rendered)


def test_names_follow_the_apache_image_convention_and_backslashes_stay_literal() -> None:
    env = {"KAFKA_NODE_ID": "0", "KAFKA_PROCESS_ROLES": "broker", "KAFKA_LOG_DIRS": "/d",
           "KAFKA_LISTENER_NAME_INTERNAL___SSL_KEYSTORE_TYPE": "PKCS12",
           "KAFKA_LOG_CLEANER__X": "on", "KAFKA_SASL_JAAS": r"a\b"}
    rendered = properties(run(env, "--print-config").stdout)
    assert rendered["listener.name.internal-ssl.keystore.type"] == "PKCS12"
    assert rendered["log.cleaner_x"] == "on"
    assert rendered["sasl.jaas"] == r"a\\b"


@pytest.mark.parametrize("missing", ["KAFKA_NODE_ID", "KAFKA_LOG_DIRS", "CLUSTER_ID"])
def test_a_missing_variable_is_named(missing: str, tmp_path: Path) -> None:
    env = {**operator_environment(), "STACKFORGE_KAFKA_CONFIG": str(tmp_path / "p")}
    del env[missing]
    result = run(env)
    assert result.returncode == 1
    assert f"{missing} is not set" in result.stderr


def test_a_value_with_a_line_break_is_refused_and_not_mistaken_for_a_variable() -> None:
    env = {**operator_environment(), "KAFKA_SSL_CERT": "x\nKAFKA_INJECTED=1"}
    result = run(env, "--print-config")
    assert result.returncode == 1
    assert "KAFKA_SSL_CERT holds a line break" in result.stderr
    assert "injected" not in result.stdout


def test_start_formats_once_then_execs_the_broker_with_half_the_memory(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "java").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {calls}\n')
    (fake / "java").chmod(0o755)
    logs = tmp_path / "data" / "logs"
    env: dict[str, Any] = {**operator_environment(), "KAFKA_LOG_DIRS": str(logs),
                           "KAFKA_HOME": "/opt/kafka",
                           "STACKFORGE_KAFKA_CONFIG": str(tmp_path / "server.properties")}
    result = run(env, path=f"{fake}:{os.environ['PATH']}")
    assert result.returncode == 0, result.stderr
    assert logs.is_dir()
    assert properties((tmp_path / "server.properties").read_text())["node.id"] == "1"
    format_call, broker_call = calls.read_text().splitlines()
    assert "kafka.tools.StorageTool format" in format_call
    assert f"--cluster-id {env['CLUSTER_ID']}" in format_call
    assert "--ignore-formatted" in format_call
    assert broker_call.startswith("-XX:MaxRAMPercentage=50.0")
    assert broker_call.endswith(f"kafka.Kafka {tmp_path / 'server.properties'}")
    assert "-cp /opt/kafka/libs/*" in broker_call
