#!/usr/bin/env python3
"""Benchmark: a Physical DR drill's RTO vs a raw ``pgbackrest restore`` + start-up replay.

On the real node (the project's cluster, its images, the operator on the
host): a tenant whose BackupPolicy archives its WAL and takes a full physical
backup after it is seeded with ``--size-mib`` of table data. Then, alternating
(and alternating which goes first in a round), ``--rounds`` times each, each
one started once the last drill's sandbox is removed (the raw baseline
removes its copy before it returns) and the machine has settled (a pause and
a sync: see settle()):

- the drill: a DRDrill with ``backup.method: Physical`` restoring the last
  archived moment; its RTO is the drill's own (status ``lastResult.rtoSeconds``
  is whole seconds; the report in S3 has it to the millisecond): from the
  run's start, through the sandbox, the scratch pod's restore and replay, its
  promotion and password change, to the runner's verified checks;
- the baseline: the same repository restored by pgBackRest on the host (the
  same S3 server, reached at localhost, the same options as the pod: zstd,
  cipher, asynchronous archive-get), then PostgreSQL 15 started on it until it
  is promoted (the time of ``pgbackrest restore`` + the server's replay,
  nothing else).

With ``--sandbox-cpu CPU``, a third contender: the same drill with its scratch
server requesting that much CPU (``spec.sandbox.resources``). Without it the
scratch pod is best effort: its cgroup weighs least of everything on the node,
while the baseline's pgBackRest runs on the host with a process's full weight.

Prints a table and the ratio of the median times (the issue's goal: at most 1.1).

    .venv/bin/python bench/pitr_drill.py [--size-mib 1024] [--rounds 2] [--sandbox-cpu 1]

Needs what `.ci/run` installs (the real node's programs, the images, PostgreSQL
15 and pgBackRest on the host). Run from the repo root as root, with no other
real node running (it is host-global).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import cpu_ledger  # noqa: E402
from bench.machine import (  # noqa: E402
    machine_facts,
    page_reporting_for_the_run,
    reported_kib,
    reported_since,
)
from tests.realnode import stack  # noqa: E402
from tests.realnode.s3_service import (  # noqa: E402
    S3_NAMESPACE,
    S3_SERVICE,
    S3_SERVICE_NAME,
    s3_service,
)
from tests.support import postgres_server as pg  # noqa: E402
from tests.support import tenants  # noqa: E402

from stackforge_operator import API_GROUP, API_VERSION  # noqa: E402
from stackforge_operator.builders.drill import DRILL_NAMESPACE_LABEL  # noqa: E402
from stackforge_operator.devcluster import images  # noqa: E402
from stackforge_operator.devcluster.binary import ensure_binary  # noqa: E402
from stackforge_operator.devcluster.cluster import LocalCluster  # noqa: E402
from stackforge_operator.devcluster.localrun import install_crds, interrupt_on_signals  # noqa: E402
from stackforge_operator.devcluster.node.realnode import ImageArchive  # noqa: E402
from stackforge_operator.devcluster.node.runtime import LOCAL_REGISTRY  # noqa: E402
from stackforge_operator.devcluster.node.tools import ensure_node_tools  # noqa: E402
from stackforge_operator.devcluster.operator_process import OperatorProcess  # noqa: E402
from stackforge_operator.devcluster.ports import free_port  # noqa: E402
from stackforge_operator.devcluster.realrun import discard_run_dir, stop_everything  # noqa: E402
from stackforge_operator.devcluster.s3server import S3Server  # noqa: E402

TENANT = "rto"
NAMESPACE = f"tenant-{TENANT}"
POLICY = "archive"
CIPHER = "archive-cipher"
GOAL = 1.1
DRILL = "drill (Physical, latest)"
RAW = "pgbackrest restore + replay"
CLUSTER_NAMES = ROOT / "tests/realnode/cluster_names"


@dataclass
class Sample:
    who: str
    seconds: float
    # The raw baseline's `pgbackrest restore` alone (the rest is start-up and
    # replay): beside the scratch pod's restore in --timeline, whether the pod
    # restores more slowly or only adds time around the restore.
    restore_seconds: float | None = None


# A pause before each contender, then everything dirty written (see settle).
SETTLE_SECONDS = 5.0


def settle() -> None:
    """Before a contender: what came before it is written and freed first.

    The seeding and the backup leave gigabytes of dirty pages (the tenant's
    table and WAL, the S3 server's objects); a contender that starts while the
    kernel writes them back pays for it, its own writes throttled behind
    theirs. A 4 GB run's first contender took 48.8 s against 25.5 s for the
    next two (docs/benchmarks.md, AE). The same for what the last contender
    left (a deleted layer, freed files).
    """
    time.sleep(SETTLE_SECONDS)
    os.sync()


def until(what: str, check: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    try:
        return tenants.eventually(check, timeout=timeout, interval=interval)
    except AssertionError as error:
        raise SystemExit(f"gave up waiting for {what}: {error}") from None


def log_time(line: str) -> float:
    """The time of a pod's log line read with timestamps (``kubectl logs --timestamps``,
    the API's ``timestamps=True``): RFC 3339 with nanoseconds, taken to the microsecond."""
    return datetime.fromisoformat(line.split(" ", 1)[0].replace("Z", "+00:00")).timestamp()


def _state(state: Any) -> str:
    return "running" if state.running else "terminated" if state.terminated else "waiting"


class Timeline:
    """What the drill's sandbox went through, seconds after the DRDrill was applied:
    each pod's changes (watched), its containers' log lines (followed) and the
    Events of the sandbox and the tenant (watched: the operator's DrillStarted,
    a controller's FailedCreate, the kubelet's Pulled and Started), printed
    after the run. For finding where a drill's time goes, not part of the figure."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.started = time.time()
        self.lines: list[tuple[float, str]] = []
        self._done = threading.Event()
        self._followed: set[tuple[str, str, str]] = set()
        self._watchers = [threading.Thread(target=self._watch, args=(watched,), daemon=True)
                          for watched in (self._watch_pods, self._watch_events,
                                          self._watch_sandbox_objects)]

    def __enter__(self) -> Timeline:
        for watcher in self._watchers:
            watcher.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        for line in sorted(self.lines):
            print(f"  {line[0] - self.started:7.2f} s  {line[1]}", flush=True)

    def note(self, text: str, at: float | None = None) -> None:
        self.lines.append((time.time() if at is None else at, text))

    def _watch(self, watched: Callable[[], None]) -> None:
        try:
            watched()
        except Exception as error:  # the cluster stops at the end of the bench
            if not self._done.is_set():
                self.note(f"{watched.__name__} ended ({type(error).__name__})")

    def _watch_sandbox_objects(self) -> None:
        """When the sandbox's namespace and its StatefulSet arrive (the pod's own
        arrival is the pod watch's first line): the operator's part of the start."""
        api = config.new_client_from_config(str(self.cluster.kubeconfig))
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        for kind, listing in (("Namespace", core.list_namespace),
                              ("StatefulSet", apps.list_stateful_set_for_all_namespaces)):
            threading.Thread(target=self._watch_added, args=(kind, listing),
                             daemon=True).start()

    def _new_objects(self, listing: Any) -> Iterator[tuple[str, Any]]:
        """(change, object) of each object made since the timeline began, until it ends.

        The watch starts with every object there is: an earlier round's (its
        sandbox still going) is not this drill's; its log lines came out at
        negative times. Creation times are whole seconds."""
        watching = watch.Watch()
        for event in watching.stream(listing, timeout_seconds=600):
            if self._done.is_set():
                watching.stop()
                return
            found = event["object"]
            if found.metadata.creation_timestamp.timestamp() >= int(self.started):
                yield event["type"], found

    def _watch_added(self, kind: str, listing: Any) -> None:
        with contextlib.suppress(Exception):  # the cluster stops at the end of the bench
            for change, found in self._new_objects(listing):
                name = found.metadata.name
                namespace = found.metadata.namespace or name
                if change == "ADDED" and namespace.startswith("drill-"):
                    self.note(f"{kind} {namespace}/{name} added")

    def _watch_events(self) -> None:
        """Each new Event of a drill's sandbox or the tenant's namespace, at its arrival
        (an Event's own times are whole seconds)."""
        core = client.CoreV1Api(config.new_client_from_config(str(self.cluster.kubeconfig)))
        for change, found in self._new_objects(core.list_event_for_all_namespaces):
            namespace = found.metadata.namespace
            if change == "ADDED" and (namespace.startswith("drill-") or namespace == NAMESPACE):
                involved = found.involved_object
                self.note(f"event {involved.kind}/{involved.name}: {found.reason}: "
                          f"{(found.message or '')[:120]}")

    def _watch_pods(self) -> None:
        core = client.CoreV1Api(config.new_client_from_config(str(self.cluster.kubeconfig)))
        seen: dict[str, str] = {}
        for _, pod in self._new_objects(core.list_pod_for_all_namespaces):
            namespace, name = pod.metadata.namespace, pod.metadata.name
            if not namespace.startswith("drill-"):
                continue
            statuses = pod.status.container_statuses or []
            state = "; ".join(
                [f"{c.type}={c.status}" for c in pod.status.conditions or []]
                + [f"{c.name}:{_state(c.state)}" for c in statuses])
            if seen.get(name) != state:
                seen[name] = state
                self.note(f"{name}: {state}")
            for container in statuses:
                key = (namespace, name, container.name)
                if container.state.running and key not in self._followed:
                    self._followed.add(key)
                    threading.Thread(target=self._follow, args=(core, *key),
                                     daemon=True).start()

    def _follow(self, core: Any, namespace: str, pod: str, container: str) -> None:
        try:
            answer = core.read_namespaced_pod_log(pod, namespace, container=container,
                                                  follow=True, timestamps=True,
                                                  _preload_content=False)
            for raw in answer.stream():
                for line in raw.decode(errors="replace").splitlines():
                    text = line.partition(" ")[2]
                    with contextlib.suppress(ValueError):
                        self.note(f"{pod}/{container}| {text.strip()[:150]}", log_time(line))
        except Exception as error:  # the pod went with its sandbox
            self.note(f"{pod}/{container}: log ended ({type(error).__name__})")


class Bench:
    def __init__(self, cluster: LocalCluster, s3: S3Server, bucket: str,
                 timeline: bool = False) -> None:
        self.cluster, self.s3, self.bucket = cluster, s3, bucket
        self.passphrase = secrets.token_urlsafe(32)
        self.timeline = timeline
        self.api = config.new_client_from_config(str(cluster.kubeconfig))

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return self.cluster.kubectl(*args, input=stdin).stdout

    def apply(self, *documents: dict[str, Any]) -> None:
        # JSON, not YAML: kubectl reads YAML 1.1, where a plain y or n that
        # PyYAML writes unquoted is a boolean, and the API server refuses it.
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                     stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                       "items": list(documents)}))

    def get(self, resource: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.kubectl("get", resource, name, "-n", NAMESPACE,
                                                        "-o", "json"))
        return found

    def psql(self, sql: str, **variables: int) -> str:
        """SQL in the tenant's primary; ``variables`` as psql's (``:name`` in ``sql``)."""
        settings = [f"--set={k}={v}" for k, v in variables.items()]
        return self.kubectl("exec", "-i", "-n", NAMESPACE, "postgres-0", "-c", "postgres", "--",
                            "psql", "-U", "postgres", "-h", "/var/run/postgresql", "-d",
                            stack.DATABASE, "-v", "ON_ERROR_STOP=1", *settings, "-tA",
                            stdin=sql).strip()

    # -- the tenant ----------------------------------------------------------------

    def tenant(self, size_mib: int) -> None:
        keys = self.s3.credentials
        assert self.s3.ca_bundle is not None
        secret: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                  "metadata": {"namespace": NAMESPACE}}
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        self.apply(
            {**secret, "metadata": {**secret["metadata"], "name": "s3-credentials"},
             "stringData": {"AWS_ACCESS_KEY_ID": keys.access_key_id,
                            "AWS_SECRET_ACCESS_KEY": keys.secret_access_key}},
            {**secret, "metadata": {**secret["metadata"], "name": "s3-ca"},
             "stringData": {"ca.crt": self.s3.ca_bundle.read_text()}},
            {**secret, "metadata": {**secret["metadata"], "name": CIPHER},
             "stringData": {"passphrase": self.passphrase}},
            self.policy(physical=False))
        tenant = stack.postgres_only(TENANT)
        tenant["spec"]["components"]["postgres"]["storage"] = f"{max(4, size_mib // 256)}Gi"
        self.apply(tenant)
        until("the tenant Ready", lambda: _condition(self.get("sft", TENANT), "Ready") == "True",
               600)
        print(f"seeding {size_mib} MiB", flush=True)
        rows = size_mib * 1024 * 1024 // 120
        self.psql("CREATE UNLOGGED TABLE bulk (id bigint, a text, b text, n double precision)")
        for first in range(1, rows + 1, 2_000_000):
            last = min(rows, first + 2_000_000 - 1)
            self.psql("INSERT INTO bulk SELECT g, md5(g::text), md5((g * 31)::text), random() "
                      "FROM generate_series(:first::bigint, :last::bigint) g",
                      first=first, last=last)
        self.psql("ALTER TABLE bulk SET LOGGED; CHECKPOINT;")
        print("a full backup of it", flush=True)
        self.apply(self.policy(physical=True))

        def backed_up() -> bool:
            found = (self.get("sfbp", POLICY).get("status") or {}).get("physicalBackups") or {}
            return bool(found.get("recoverabilityWindow")) and not found.get("pendingRequest")

        until("the full backup", backed_up, 1800, 2)

    def policy(self, *, physical: bool) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "tenantRef": {"name": TENANT}, "targets": ["Postgres"],
            "storage": {"bucket": self.bucket, "prefix": "backups",
                        "endpoint": f"https://{S3_SERVICE_NAME}", "region": "us-east-1",
                        "forcePathStyle": True,
                        "credentialsSecretRef": {"name": "s3-credentials"},
                        "endpointCA": {"name": "s3-ca"}},
            "retention": {"keepLast": 3},
            "continuousArchiving": {"repositoryCipherSecretRef": {"name": CIPHER,
                                                                  "key": "passphrase"}},
        }
        if physical:
            spec["physicalBackups"] = {"fullSchedule": "0 0 1 1 *",
                                       "retention": {"fullCount": 1}}
        return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "BackupPolicy",
                "metadata": {"name": POLICY, "namespace": NAMESPACE}, "spec": spec}

    # -- the contenders --------------------------------------------------------------

    def drill(self, number: int, cpu: str | None = None) -> Sample:
        if not self.timeline:
            return self._drill(number, cpu)
        with Timeline(self.cluster) as timeline:
            return self._drill(number, cpu, timeline)

    def _drill(self, number: int, cpu: str | None, timeline: Timeline | None = None) -> Sample:
        name = f"rto-{number}" if cpu is None else f"rto-cpu-{number}"
        spec: dict[str, Any] = {
            "tenantRef": {"name": TENANT}, "backupPolicyRef": {"name": POLICY},
            "once": True, "backup": {"method": "Physical"},
            "checks": {"queries": [{"name": "rows", "expectedRows": 1,
                                    "sql": "SELECT 1 FROM bulk LIMIT 1"}]}}
        if cpu is not None:
            spec["sandbox"] = {"resources": {"requests": {"cpu": cpu}}}
        self.apply({"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "DRDrill",
                    "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec})

        result = self._verdict(name)
        if result["verdict"] != "Passed":
            raise SystemExit(f"drill {name} failed: {result}")
        key = result["reportLocation"].split("/", 3)[3]
        report = json.loads(self.s3.client().get_object(Bucket=self.bucket, Key=key)["Body"]
                            .read())
        if timeline is not None:
            # The RTO's own ends, as the runner wrote them (milliseconds).
            for moment in ("startedAt", "verifiedAt"):
                at = report.get(moment)
                if at:
                    timeline.note(f"report {moment}", datetime.fromisoformat(at).timestamp())
        return Sample(DRILL if cpu is None else f"drill, {cpu} CPU requested",
                      float(report["rto"]["seconds"]))

    def until_sandboxes_gone(self) -> None:
        """Until no drill's sandbox namespace is left.

        The operator removes a sandbox once its verdict is in: the scratch pod's
        stop and its restored data's removal, a gigabyte or more. The raw
        baseline removes its copy before it returns, so the next contender
        starts on a quiet machine; after a drill it must too. (Before, a drill
        that followed a drill ran about 1.5 s slower.) The kubelet lets a pod's
        object go only once its volumes are torn down, and the namespace goes
        after its pods: then the restored data is gone too."""
        core = client.CoreV1Api(self.api)
        selector = f"{DRILL_NAMESPACE_LABEL}={NAMESPACE}"
        until("the drills' sandboxes to be removed",
               lambda: not core.list_namespace(label_selector=selector).items, 600, 0.5)

    def _verdict(self, name: str, timeout: float = 3600) -> dict[str, Any]:
        """The DRDrill's lastResult once its run is over, from one watch.

        Not a kubectl poll: each kubectl costs about 0.1 s of CPU, taken from
        the restore on two cores, while the baseline waits with a 5 ms psql.
        """
        objects = client.CustomObjectsApi(self.api)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            watching = watch.Watch()
            for event in watching.stream(
                    objects.list_namespaced_custom_object, API_GROUP, API_VERSION, NAMESPACE,
                    "drdrills", field_selector=f"metadata.name={name}",
                    timeout_seconds=max(1, min(300, int(deadline - time.monotonic())))):
                found = event["object"].get("status") or {}
                if found.get("lastResult") and not found.get("activeRun"):
                    watching.stop()
                    result: dict[str, Any] = found["lastResult"]
                    return result
        raise SystemExit(f"gave up waiting for drill {name} after {timeout:.0f} s")

    def raw(self) -> Sample:
        repository = self.get("sfbp", POLICY)["status"]["continuousArchiving"]["repositoryPath"]
        user = pg.PgUser.for_server()
        work = Path(tempfile.mkdtemp(prefix="sf-bench-rto-"))
        data, run = work / "data", work / "run"
        config = work / "pgbackrest.conf"
        assert self.cluster.node is not None and self.s3.ca_bundle is not None
        keys = self.s3.credentials
        config.write_text("\n".join([
            "[global]", "repo1-type=s3", f"repo1-s3-bucket={self.bucket}",
            # The host reaches the server by a name its certificate has (pgBackRest
            # checks the host it connects to, by name only).
            "repo1-s3-endpoint=localhost",
            f"repo1-storage-port={self.s3.port}", "repo1-s3-region=us-east-1",
            f"repo1-s3-key={keys.access_key_id}", f"repo1-s3-key-secret={keys.secret_access_key}",
            "repo1-s3-uri-style=path", f"repo1-storage-ca-file={work / 'ca.pem'}",
            f"repo1-path={repository}", "repo1-cipher-type=aes-256-cbc",
            f"repo1-cipher-pass={self.passphrase}", "archive-async=y",
            f"spool-path={work / 'spool'}", f"lock-path={work / 'lock'}", "log-level-file=off",
            f"[{TENANT}]", f"pg1-path={data}", ""]))
        run.mkdir()
        # The server's copy: the S3 server's own directory is root's only.
        shutil.copy(self.s3.ca_bundle, work / "ca.pem")
        for path in (work, config, run, work / "ca.pem"):
            os.chown(path, user.uid, user.gid)
        config.chmod(0o600)
        bin_dir = pg.find_bin_dir()
        server: subprocess.Popen[bytes] | None = None
        started = time.monotonic()
        try:
            ran = subprocess.run(  # type: ignore[call-overload]
                ["pgbackrest", f"--config={config}", f"--stanza={TENANT}", "restore"],
                capture_output=True, text=True, check=False, **user.popen_kwargs())
            if ran.returncode != 0:
                raise SystemExit(f"pgbackrest restore failed:\n{ran.stdout}{ran.stderr}")
            restored = time.monotonic() - started
            port = str(free_port())
            env = {**os.environ, "PGBACKREST_CONFIG": str(config)}
            server = subprocess.Popen(  # type: ignore[call-overload]
                [str(bin_dir / "postgres"), "-D", str(data), "-p", port,
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={run}",
                 "-c", f"restore_command=pgbackrest --config={config} --stanza={TENANT} "
                       "archive-get %f \"%p\""],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                start_new_session=True, **user.popen_kwargs())

            def promoted() -> bool:
                asked = subprocess.run(  # type: ignore[call-overload]
                    [str(bin_dir / "psql"), "-X", "-tA", "-h", str(run), "-p", port,
                     "-U", "postgres", "-d", "postgres", "-c", "SELECT pg_is_in_recovery()"],
                    capture_output=True, text=True, check=False, **user.popen_kwargs())
                return bool(asked.stdout.strip() == "f")

            until("the raw restore's promotion", promoted, 3600, 0.1)
            return Sample(RAW, time.monotonic() - started, restored)
        finally:
            if server is not None:
                server.send_signal(signal.SIGINT)
                server.wait(60)
            shutil.rmtree(work, ignore_errors=True)


def _drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def _condition(found: dict[str, Any], type_: str) -> str | None:
    for condition in (found.get("status") or {}).get("conditions") or []:
        if condition["type"] == type_:
            return str(condition["status"])
    return None


@contextlib.contextmanager
def real_node_stack() -> Iterator[tuple[LocalCluster, S3Server, str]]:
    """The project's cluster with its real node and images, an S3 server over TLS
    with a bucket (pods reach it as S3_SERVICE_NAME, the host at localhost) and the
    operator on the host; everything stopped afterwards, the host put back.
    """
    binary = ensure_binary()
    ensure_node_tools()
    built = images.ensure_images()
    cluster = LocalCluster(None, binary=binary, nodes=0, real_node=True,
                           images=[ImageArchive(i.reference, i.archive_path, i.inputs)
                                   for i in built])
    operator: OperatorProcess | None = None
    s3: S3Server | None = None
    try:
        cluster.start(timeout=180)
        install_crds(cluster)
        assert cluster.node is not None
        node_ip = cluster.node.network.node_ip
        # On every address: pods reach it at the node's (through the Service), the
        # baseline on the host at localhost.
        s3 = S3Server(host="0.0.0.0", tls=True, server_names=(S3_SERVICE_NAME,))  # noqa: S104
        s3.start()
        bucket = s3.create_bucket()
        cluster.kubectl("apply", "--server-side", "-f", "-",
                        input=json.dumps({"apiVersion": "v1", "kind": "List",
                                          "items": s3_service(node_ip, s3.port)}))
        service_ip = json.loads(cluster.kubectl(
            "get", "service", S3_SERVICE, "-n", S3_NAMESPACE, "-o", "json").stdout)[
            "spec"]["clusterIP"]
        catalog = images.write_project_catalog(cluster.run_dir / "image-catalog.yaml")
        operator = OperatorProcess(
            cluster.kubeconfig, cluster.run_dir / "operator.log",
            extra_env={"STACKFORGE_IMAGE_REGISTRY": LOCAL_REGISTRY,
                       "STACKFORGE_IMAGE_CATALOG": str(catalog),
                       # The operator on the host reaches S3 by the name pods use.
                       "PYTHONPATH": str(CLUSTER_NAMES),
                       "STACKFORGE_TEST_SERVICE_ADDRESSES": f"{S3_SERVICE_NAME}={service_ip}"})
        operator.start()
        yield cluster, s3, bucket
    finally:
        stop_everything(cluster, operator, s3)
    discard_run_dir(cluster.run_dir)  # only after a run that finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--drop-caches", action="store_true",
                        help="empty the host's page cache before each restore: both read "
                             "the repository from disk, as a restore after days would")
    parser.add_argument("--timeline", action="store_true",
                        help="print each drill's pods' changes and log lines as they came "
                             "(its watch and log streams take CPU during the drills only: "
                             "for where the time goes, not for the ratio)")
    parser.add_argument("--cpu", action="store_true",
                        help="print where the machine's CPU went during each contender "
                             "(bench/cpu_ledger.py): what ran beside the restore")
    parser.add_argument("--sandbox-cpu", default=None, metavar="CPU",
                        help="also a third contender: the drill with spec.sandbox.resources "
                             "requesting this much CPU (the scratch pod is then Burstable, "
                             "not best effort, and weighs as much as a host process)")
    parser.add_argument("--pause-page-reporting", action="store_true",
                        help="turn the kernel's free page reporting off for the run and put "
                             "it back after (bench/machine.py): with it on, whichever "
                             "contender meets reported pages pays about 1 s a GiB more")
    args = parser.parse_args()
    # A TERM (or an INT to a background run) must still put the host back.
    interrupt_on_signals()
    print(machine_facts(), flush=True)

    samples: list[Sample] = []
    with page_reporting_for_the_run(args.pause_page_reporting) as reporting, \
            real_node_stack() as (cluster, s3, bucket):
        print(f"during the run: {reporting}", flush=True)
        bench = Bench(cluster, s3, bucket, timeline=args.timeline)
        bench.tenant(args.size_mib)
        size = int(bench.psql("SELECT pg_database_size(current_database())"))
        for number in range(1, args.rounds + 1):
            # Who goes first alternates, so that neither is always the one that
            # reads the repository first after the backup (from the S3 server's
            # disk rather than its page cache).
            contenders: list[tuple[str, Callable[[], Sample]]] = [
                ("drill", functools.partial(bench.drill, number)), ("raw", bench.raw)]
            if args.sandbox_cpu is not None:
                contenders.insert(1, ("drill with CPU", functools.partial(
                    bench.drill, number, args.sandbox_cpu)))
            # Each round starts one later in the list.
            shift = (number - 1) % len(contenders)
            for who, measure in contenders[shift:] + contenders[:shift]:
                settle()
                if args.drop_caches:
                    _drop_caches()
                before = cpu_ledger.snapshot() if args.cpu else None
                reported_before = reported_kib()
                samples.append(measure())
                restore = samples[-1].restore_seconds
                print(f"{who} {number}: {samples[-1].seconds:.1f} s"
                      + ("" if restore is None else f" (pgbackrest restore {restore:.1f} s)")
                      + reported_since(reported_before), flush=True)
                if before is not None:
                    spent = cpu_ledger.between(before, cpu_ledger.snapshot())
                    print(f"  {spent.summary(top=12)}", flush=True)
                bench.until_sandboxes_gone()

    caches = "page cache emptied before each" if args.drop_caches else "warm page cache"
    print(f"\ndatabase: {size / 1e6:.0f} MB; {args.rounds} rounds each, alternating who "
          f"goes first; {caches}\n")
    print(f"| {'contender':<28} | {'seconds (each)':<24} | {'median':>8} |")
    print(f"|{'-' * 30}|{'-' * 26}|{'-' * 10}|")
    medians = {}
    for who in dict.fromkeys(s.who for s in samples):
        mine = [s.seconds for s in samples if s.who == who]
        medians[who] = statistics.median(mine)
        each = ", ".join(f"{s:.1f}" for s in mine)
        print(f"| {who:<28} | {each:<24} | {medians[who]:>6.1f} s |")
    raw_restores = [s.restore_seconds for s in samples if s.restore_seconds is not None]
    print(f"\nof the raw baseline, `pgbackrest restore` alone: median "
          f"{statistics.median(raw_restores):.1f} s "
          f"({', '.join(f'{r:.1f}' for r in raw_restores)})")
    print()
    for who in medians:
        if who != RAW:
            print(f"{who} RTO / raw restore + replay: {medians[who] / medians[RAW]:.2f} "
                  f"(goal: <= {GOAL})")


if __name__ == "__main__":
    main()
