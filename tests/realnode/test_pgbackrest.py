"""The PostgreSQL image's pgBackRest, in a pod on the real node, reads the tests' S3
server by its Service name over verified TLS (the physical backups' path), and is
refused by the address alone: pgBackRest matches names, not addresses."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.realnode import pods, runs
from tests.realnode.s3_service import S3_SERVICE_NAME
from tests.support import tenants
from tests.support.clusters import ClusterHandle
from tests.support.s3_server import S3Server

POD = "pgbackrest"
REPOSITORY = "/repository"


def _pgbackrest_pod(namespace: str) -> dict[str, Any]:
    spec = pods.postgres_pod(POD, namespace, {"app": POD})
    container = spec["spec"]["containers"][0]
    # Only the tool: no server, hence no probe.
    container["command"] = ["sleep", "infinity"]
    del container["args"], container["readinessProbe"]
    container["env"] = [
        {"name": f"PGBACKREST_REPO1_S3_{name}",
         "valueFrom": {"secretKeyRef": {"name": "s3-credentials", "key": key}}}
        for name, key in (("KEY", "AWS_ACCESS_KEY_ID"), ("KEY_SECRET", "AWS_SECRET_ACCESS_KEY"))
    ]
    container["volumeMounts"].append({"name": "s3-ca", "mountPath": "/etc/s3-ca",
                                      "readOnly": True})
    spec["spec"]["volumes"].append({"name": "s3-ca", "secret": {"secretName": "s3-ca"}})
    return spec


@pytest.fixture(scope="module")
def namespace(real_cluster: ClusterHandle, pod_s3: S3Server) -> Iterator[str]:
    ns = f"pgbr-{uuid.uuid4().hex[:6]}"
    tenants.ensure_namespace(real_cluster, ns)
    runs.put_s3_secrets(real_cluster, ns, pod_s3)
    pods.apply(real_cluster, _pgbackrest_pod(ns))
    pods.wait_ready(real_cluster, ns, POD)
    try:
        yield ns
    finally:
        real_cluster.kubectl("delete", "namespace", ns, "--wait=false")


def _repository_command(cluster: ClusterHandle, namespace: str, s3: S3Server, bucket: str,
                        endpoint: str, port: int, *command: str) -> tuple[int, str]:
    result = pods.exec_in(
        cluster, namespace, POD, "pgbackrest", "--repo1-type=s3", f"--repo1-s3-bucket={bucket}",
        f"--repo1-s3-endpoint={endpoint}", f"--repo1-storage-port={port}",
        f"--repo1-s3-region={s3.region}", "--repo1-s3-uri-style=path",
        "--repo1-storage-ca-file=/etc/s3-ca/ca.crt", f"--repo1-path={REPOSITORY}",
        "--io-timeout=10", "--log-level-console=warn", "--log-level-file=off", *command,
        check=False)
    return result.returncode, result.stdout + result.stderr


def test_a_pod_reads_the_repository_by_the_service_name_and_not_by_address(
        real_cluster: ClusterHandle, namespace: str, pod_s3: S3Server) -> None:
    bucket = pod_s3.create_bucket()
    content = f"written by the test {uuid.uuid4().hex}\n"
    pod_s3.client().put_object(Bucket=bucket, Key=f"{REPOSITORY.lstrip('/')}/probe.txt",
                               Body=content.encode())

    code, listed = _repository_command(real_cluster, namespace, pod_s3, bucket,
                                       S3_SERVICE_NAME, 443, "repo-ls")
    assert code == 0 and listed.split() == ["probe.txt"], listed
    code, fetched = _repository_command(real_cluster, namespace, pod_s3, bucket,
                                        S3_SERVICE_NAME, 443, "repo-get", "probe.txt")
    assert code == 0 and fetched == content, fetched

    # The same server by its address: the certificate names it, pgBackRest does not look.
    node_ip = pod_s3.host
    code, refused = _repository_command(real_cluster, namespace, pod_s3, bucket,
                                        node_ip, pod_s3.port, "repo-ls")
    assert code != 0 and f"unable to find hostname '{node_ip}'" in refused, refused
    assert pod_s3.credentials.secret_access_key not in listed + fetched + refused
