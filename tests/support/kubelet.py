"""A stand-in kubelet for the pods whose work must really happen.

kwok makes pods Running but runs nothing. Backup and drill runner pods
(label ``stackforge.io/runner``) are left alone by kwok's stages; this harness
does for them what a kubelet would: resolves the container's environment
(values and Secret references), mounts its ConfigMaps as files, runs its
command, and reports the exit code and termination message in the pod's
status. Service DNS names are resolved to the real servers on loopback, as
cluster DNS and kube-proxy would.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.support.clusters import ClusterHandle

RUNNER_LABEL = "stackforge.io/runner"
TERMINATION_LOG = "/dev/termination-log"


@dataclass
class PodRun:
    namespace: str
    pod: str
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    termination_message: str


class RunnerKubelet:
    def __init__(
        self,
        cluster: ClusterHandle,
        *,
        services: dict[str, tuple[str, int]],
        path_prefix: str = "",
    ) -> None:
        """``services`` maps a Service DNS name (e.g. postgres.tenant-x.svc) to host, port."""
        self.cluster = cluster
        self.core = client.CoreV1Api(cluster.api)
        self.services = services
        self.path_prefix = path_prefix
        self.handled: set[str] = set()

    def wait_for_pod(self, namespace: str, runner: str, timeout: float = 60.0) -> Any:
        """The next Running runner pod not yet handled."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pods = self.core.list_namespaced_pod(
                namespace, label_selector=f"{RUNNER_LABEL}={runner}").items
            for pod in sorted(pods, key=lambda p: p.metadata.creation_timestamp):
                if pod.metadata.uid not in self.handled and pod.status.phase == "Running":
                    return pod
            time.sleep(0.25)
        raise AssertionError(f"no {runner} runner pod became Running in {namespace}")

    def run_next(self, namespace: str, runner: str, timeout: float = 60.0) -> PodRun:
        return self.run(self.wait_for_pod(namespace, runner, timeout))

    def run(self, pod: Any) -> PodRun:
        self.handled.add(pod.metadata.uid)
        namespace = pod.metadata.namespace
        container = pod.spec.containers[0]
        with tempfile.TemporaryDirectory(prefix="sf-kubelet-") as scratch:
            root = Path(scratch)
            mounts = self._mount_config_maps(pod, root)
            termination = root / "termination-log"
            args = [self._rewrite(a, mounts, termination) for a in container.args or []]
            env = self._environment(namespace, container)
            argv = [self._executable(container.command[0]), *container.command[1:], *args]
            started = datetime.now(UTC)
            result = subprocess.run(argv, env=env, capture_output=True, text=True,
                                    timeout=900, check=False)
            message = termination.read_text() if termination.exists() else ""
            if not message and container.termination_message_policy == "FallbackToLogsOnError":
                message = (result.stdout + result.stderr)[-4096:]
        self._report(pod, result.returncode, message, started)
        return PodRun(namespace, pod.metadata.name, argv, result.returncode, result.stdout,
                      result.stderr, message)

    # -- what a kubelet does -------------------------------------------------------

    def _executable(self, command: str) -> str:
        # The image's entry point is the console script installed beside python.
        candidate = Path(sys.executable).parent / command
        return str(candidate) if candidate.exists() else command

    def _mount_config_maps(self, pod: Any, root: Path) -> dict[str, Path]:
        volumes = {v.name: v for v in pod.spec.volumes or []}
        mounts: dict[str, Path] = {}
        for mount in pod.spec.containers[0].volume_mounts or []:
            volume = volumes.get(mount.name)
            if volume is None or volume.config_map is None:
                continue
            target = root / mount.name
            target.mkdir()
            data = self.core.read_namespaced_config_map(
                volume.config_map.name, pod.metadata.namespace).data or {}
            for key, value in data.items():
                (target / key).write_text(value)
            mounts[mount.mount_path] = target
        return mounts

    def _rewrite(self, arg: str, mounts: dict[str, Path], termination: Path) -> str:
        if arg == TERMINATION_LOG:
            return str(termination)
        for mount_path, target in mounts.items():
            if arg.startswith(mount_path + "/"):
                return str(target) + arg[len(mount_path):]
        return arg

    def _environment(self, namespace: str, container: Any) -> dict[str, str]:
        env = {
            "PATH": f"{self.path_prefix}:{os.environ.get('PATH', '')}".strip(":"),
            "HOME": tempfile.gettempdir(),
        }
        for var in container.env or []:
            if var.value is not None:
                env[var.name] = var.value
            elif var.value_from is not None and var.value_from.secret_key_ref is not None:
                ref = var.value_from.secret_key_ref
                secret = self.core.read_namespaced_secret(ref.name, namespace)
                env[var.name] = base64.b64decode(secret.data[ref.key]).decode()
        host = env.get("PGHOST")
        if host in self.services:
            env["PGHOST"], port = self.services[host]
            env["PGPORT"] = str(port)
        return env

    def _report(self, pod: Any, returncode: int, message: str, started: datetime) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        container = pod.spec.containers[0]
        status = {
            "phase": "Succeeded" if returncode == 0 else "Failed",
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "PodCompleted",
                 "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "False", "reason": "PodCompleted",
                 "lastTransitionTime": now},
            ],
            "containerStatuses": [{
                "name": container.name,
                "image": container.image,
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "state": {"terminated": {
                    "exitCode": returncode,
                    "reason": "Completed" if returncode == 0 else "Error",
                    "message": message[-4096:],
                    "startedAt": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "finishedAt": now,
                }},
            }],
        }
        self.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace,
                                              {"status": status})
