"""The operator as a child process (`stackforge-operator run`), as users run it."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx

from stackforge_operator.devcluster.cluster import ControlPlaneError
from stackforge_operator.devcluster.ports import free_port
from stackforge_operator.devcluster.processes import ManagedProcess
from stackforge_operator.notify import destinations


class OperatorProcess:
    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        *,
        extra_args: tuple[str, ...] = (),
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.liveness_url = f"http://127.0.0.1:{free_port()}/healthz"
        self.metrics_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        env = {
            # A local cluster's receivers (a developer's, the tests') listen on this
            # host, which a deployed operator's notifications may never reach.
            destinations.ALLOWED_ENV: "127.0.0.0/8 ::1/128",
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "STACKFORGE_METRICS_PORT": str(self.metrics_port),
            **(extra_env or {}),
        }
        self.process = ManagedProcess(
            name="stackforge-operator",
            argv=[
                sys.executable, "-m", "stackforge_operator", "run",
                f"--liveness={self.liveness_url}", *extra_args,
            ],
            log_path=log_path,
            env=env,
        )

    def start(self, timeout: float = 60.0) -> None:
        self.process.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.process.running():
                raise ControlPlaneError(
                    f"the operator exited during start-up:\n{self.process.log_tail()}"
                )
            if self.liveness_ok():
                return
            time.sleep(0.2)
        self.stop()
        raise ControlPlaneError(f"the operator's liveness endpoint never answered:\n"
                                f"{self.process.log_tail()}")

    def liveness_ok(self) -> bool:
        try:
            return httpx.get(self.liveness_url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.process.stop(timeout=20)
