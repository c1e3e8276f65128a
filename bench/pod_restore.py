"""Benchmark: a pod's ``pgbackrest restore`` against the host's, of the same backup.

Where does a Physical drill lose time against the raw baseline of
bench/pitr_drill.py? This takes the drill apart: no operator, no sandbox, no
server start. The same tenant, archive and full backup as bench/pitr_drill.py;
then, alternating who goes first, the host's ``pgbackrest restore`` (the
baseline's own, bench/pitr_drill.Bench.raw) and bare pods on the real node
that run only ``stackforge-restore`` in the project's PostgreSQL image, in
variants of what a scratch pod is:

- ``pod``: as the drill's scratch server (data in the container's writable
  layer, seccomp RuntimeDefault, the pod network and the S3 Service, best effort);
- ``upkeep``: the same with the drill's upkeep sidecar beside it, at the drill's
  paces, waiting for a server that never comes;
- ``unconfined``: seccomp Unconfined;
- ``hostnet``: the host's network, S3 at localhost as the host's restore reaches it;
- ``emptydir``: the data on an emptyDir.

A pod's restore is timed from stackforge-restore's "restoring" line to its
"restored" line (the container runtime's timestamps), the host's around
``pgbackrest restore``. Before each contender the machine settles (a pause and a
sync, bench/pitr_drill.settle), so that neither the setup's writes nor the last
contender's teardown land in its time.

Usage: .venv/bin/python bench/pod_restore.py [--size-mib 1024] [--rounds 8]
       [--variants pod,upkeep]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import cpu_ledger  # noqa: E402
from bench.machine import (  # noqa: E402
    machine_facts,
    page_reporting_for_the_run,
    reported_kib,
    reported_since,
)
from bench.pitr_drill import (  # noqa: E402
    NAMESPACE,
    POLICY,
    TENANT,
    Bench,
    log_time,
    real_node_stack,
    settle,
    until,
)
from tests.realnode.s3_service import S3_SERVICE_NAME  # noqa: E402

from stackforge_operator.builders import archiving  # noqa: E402
from stackforge_operator.builders.common import env, secret_env  # noqa: E402
from stackforge_operator.builders.drill import (  # noqa: E402
    RESTORE_CA_FILE,
    RESTORED_RETRY_SECONDS,
    RESTORED_STARTING_RETRY_SECONDS,
    SCRATCH_SOCKET,
)
from stackforge_operator.builders.postgres import SYNCED_MARKER, UPKEEP_PROGRAM  # noqa: E402
from stackforge_operator.builders.postgres_paths import DATA_DIR, PGDATA  # noqa: E402
from stackforge_operator.devcluster.localrun import interrupt_on_signals  # noqa: E402
from stackforge_operator.models.backup import ObjectStorage  # noqa: E402
from stackforge_operator.models.common import SecretKeyRef  # noqa: E402

BENCH_NAMESPACE = "bench-pod-restore"
CREDENTIALS = "restore-source"
HOST = "host"
VARIANTS = ("pod", "upkeep", "unconfined", "hostnet", "emptydir")


def restore_environment(bucket: str, repository: str, *, endpoint: str,
                        port: int | None) -> list[dict[str, Any]]:
    """stackforge-restore's settings for the bench tenant's ``repository`` in ``bucket``, built by
    the builder the drill's scratch server uses (builders/archiving), with the
    keys, cipher and CA from CREDENTIALS and the CA as text, as a drill hands it."""
    url = f"https://{endpoint}" + (f":{port}" if port is not None else "")
    storage = ObjectStorage.model_validate({
        "bucket": bucket, "endpoint": url, "region": "us-east-1", "forcePathStyle": True,
        "credentialsSecretRef": {"name": CREDENTIALS, "accessKeyIdKey": "key-id",
                                 "secretAccessKeyKey": "secret-key"},
        "endpointCA": {"name": CREDENTIALS, "key": "ca"}})
    return [env("PGDATA", PGDATA),
            *archiving.restore_environment(
                storage, SecretKeyRef(name=CREDENTIALS, key="cipher"), stanza_name=TENANT,
                repository_path=repository, target="latest", ca_file=RESTORE_CA_FILE),
            secret_env("STACKFORGE_RESTORE_CA_PEM", CREDENTIALS, "ca")]


def restore_pod(name: str, image: str, environment: list[dict[str, Any]], *,
                seccomp: str = "RuntimeDefault", host_network: bool = False,
                empty_dir: bool = False, upkeep: bool = False) -> dict[str, Any]:
    security = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                "runAsNonRoot": True, "seccompProfile": {"type": seccomp}}
    restore: dict[str, Any] = {"name": "restore", "image": image,
                               "command": ["stackforge-restore"], "env": environment,
                               "securityContext": security}
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [restore],
                            "hostNetwork": host_network, "enableServiceLinks": False,
                            "terminationGracePeriodSeconds": 1}
    if upkeep:
        # As the drill's (builders/drill.restored_database), at its paces; the
        # passwords are never used: no server comes.
        values = {"POSTGRES_USER": "postgres", "APP_USER": "app",
                  "REPLICATION_USER": "replicator", "PGHOST": SCRATCH_SOCKET,
                  "READY_MARKER": SYNCED_MARKER, "RETRY_SECONDS": RESTORED_RETRY_SECONDS,
                  "STARTING_RETRY_SECONDS": RESTORED_STARTING_RETRY_SECONDS,
                  "POSTGRES_PASSWORD": "unused", "APP_PASSWORD": "unused",
                  "REPLICATION_PASSWORD": "unused"}
        spec["containers"].append({
            "name": "upkeep", "image": image, "command": [UPKEEP_PROGRAM],
            "env": [{"name": k, "value": v} for k, v in values.items()],
            "securityContext": security})
    if empty_dir:
        restore["volumeMounts"] = [{"name": "data", "mountPath": DATA_DIR}]
        spec["volumes"] = [{"name": "data", "emptyDir": {}}]
        spec["securityContext"] = {"fsGroup": 999}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": BENCH_NAMESPACE}, "spec": spec}


class PodRestores:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.image = json.loads(bench.kubectl(
            "get", "pod", "postgres-0", "-n", NAMESPACE, "-o", "json"))["spec"]["containers"][0][
            "image"]
        assert bench.s3.ca_bundle is not None
        keys = bench.s3.credentials
        bench.apply({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": BENCH_NAMESPACE}})
        bench.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                     "metadata": {"name": CREDENTIALS, "namespace": BENCH_NAMESPACE},
                     "stringData": {"cipher": bench.passphrase, "key-id": keys.access_key_id,
                                    "secret-key": keys.secret_access_key,
                                    "ca": bench.s3.ca_bundle.read_text()}})
        repository = bench.get("sfbp", POLICY)["status"]["continuousArchiving"][
            "repositoryPath"]
        self.through_service = restore_environment(
            bench.bucket, repository, endpoint=S3_SERVICE_NAME, port=None)
        self.at_localhost = restore_environment(
            bench.bucket, repository, endpoint="localhost", port=bench.s3.port)

    def manifest(self, variant: str, name: str) -> dict[str, Any]:
        env = self.through_service
        match variant:
            case "pod":
                return restore_pod(name, self.image, env)
            case "upkeep":
                return restore_pod(name, self.image, env, upkeep=True)
            case "unconfined":
                return restore_pod(name, self.image, env, seccomp="Unconfined")
            case "hostnet":
                return restore_pod(name, self.image, self.at_localhost, host_network=True)
            case "emptydir":
                return restore_pod(name, self.image, env, empty_dir=True)
        raise ValueError(f"no variant {variant!r}")

    def seconds(self, variant: str, number: int) -> float:
        name = f"{variant}-{number}"
        kubectl = self.bench.kubectl
        # JSON, not YAML: kubectl reads YAML 1.1, where PyYAML's plain "y" (pgBackRest's
        # ARCHIVE_ASYNC and BUNDLE settings) is a boolean.
        kubectl("apply", "-f", "-", stdin=json.dumps(self.manifest(variant, name)))

        def restored() -> bool:
            status = json.loads(kubectl("get", "pod", name, "-n", BENCH_NAMESPACE,
                                        "-o", "json"))["status"]
            for container in status.get("containerStatuses") or []:
                ended = container["state"].get("terminated") if container[
                    "name"] == "restore" else None
                if ended is not None:
                    if ended["exitCode"] != 0:
                        raise SystemExit(kubectl("logs", name, "-n", BENCH_NAMESPACE,
                                                 "-c", "restore"))
                    return True
            return False

        until(f"pod {name}'s restore", restored, 900, 0.5)
        lines = kubectl("logs", "--timestamps", name, "-n", BENCH_NAMESPACE,
                        "-c", "restore").splitlines()
        began = next(log_time(x) for x in lines if "stackforge-restore: restoring" in x)
        ended = next(log_time(x) for x in lines if "stackforge-restore: restored" in x)
        kubectl("delete", "pod", name, "-n", BENCH_NAMESPACE, "--wait=true")
        return ended - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--cpu", action="store_true",
                        help="print where the machine's CPU went during each contender "
                             "(bench/cpu_ledger.py)")
    parser.add_argument("--variants", default="pod,upkeep",
                        help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--pause-page-reporting", action="store_true",
                        help="turn the kernel's free page reporting off for the run and put "
                             "it back after (bench/machine.py)")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"no such variant: {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    interrupt_on_signals()
    print(machine_facts(), flush=True)

    results: dict[str, list[float]] = {}
    with page_reporting_for_the_run(args.pause_page_reporting) as reporting, \
            real_node_stack() as (cluster, s3, bucket):
        print(f"during the run: {reporting}", flush=True)
        bench = Bench(cluster, s3, bucket)
        bench.tenant(args.size_mib)
        size = int(bench.psql("SELECT pg_database_size(current_database())"))
        pods = PodRestores(bench)

        def host_seconds() -> float:
            seconds = bench.raw().restore_seconds
            assert seconds is not None
            return seconds

        contenders: list[tuple[str, Callable[[int], float]]] = [
            (HOST, lambda _: host_seconds()),
            *[(v, functools.partial(pods.seconds, v)) for v in variants]]
        for number in range(1, args.rounds + 1):
            shift = (number - 1) % len(contenders)
            for who, measure in contenders[shift:] + contenders[:shift]:
                settle()
                before = cpu_ledger.snapshot() if args.cpu else None
                reported_before = reported_kib()
                results.setdefault(who, []).append(measure(number))
                print(f"{time.strftime('%T')} {who} {number}: {results[who][-1]:.2f} s"
                      + reported_since(reported_before), flush=True)
                if before is not None:
                    spent = cpu_ledger.between(before, cpu_ledger.snapshot())
                    print(f"  {spent.summary(top=10)}", flush=True)

    print(f"\ndatabase: {size / 1e6:.0f} MB; {args.rounds} rounds, alternating who goes "
          f"first; `pgbackrest restore` alone, seconds\n")
    print(f"| {'where':<12} | {'each':<58} | {'median':>7} | {'/ host':>6} |")
    print(f"|{'-' * 14}|{'-' * 60}|{'-' * 9}|{'-' * 8}|")
    host = statistics.median(results[HOST])
    for who, each in results.items():
        median = statistics.median(each)
        print(f"| {who:<12} | {', '.join(f'{s:.2f}' for s in each):<58} | {median:>7.2f} | "
              f"{median / host:>6.2f} |")


if __name__ == "__main__":
    main()
