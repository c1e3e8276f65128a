"""podman with a configuration and a storage of its own, under the image cache.

The host's /etc/containers stays untouched: these hosts need settings that are
not podman's defaults (DESIGN.md section 7: no ulimits, runc, cgroupfs, file
events), and a private storage lets the image cache survive between runs
without mixing with anything else on the machine. Every podman call of the
image builder goes through :class:`Podman`, so it always sees the same files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from stackforge_operator.devcluster.image_errors import ImageBuildError

# podman >= 4 reads every setting below; Debian bookworm ships 4.3.
CONTAINERS_CONF = """\
# Written by stackforge_operator.devcluster.image_podman: the image builder's own
# podman settings. Hosts with a hybrid cgroup v1 layout and no CAP_SYS_RESOURCE
# need every one of them.
[containers]
# Raising the open-files limit is refused here; containers keep the caller's.
default_ulimits = []
log_driver = "k8s-file"

[engine]
# crun refuses the hybrid cgroup layout; runc works with the cgroupfs driver.
runtime = "runc"
cgroup_manager = "cgroupfs"
# No journald to write events to.
events_logger = "file"
tmp_dir = "{tmp_dir}"

[network]
# Builds use the host network and test runs none: no network is ever created,
# but podman still locks its configuration directory, which stays in the cache.
network_config_dir = "{network_dir}"
"""

STORAGE_CONF = """\
# Written by stackforge_operator.devcluster.image_podman.
[storage]
driver = "overlay"
graphroot = "{graphroot}"
runroot = "{runroot}"
"""

# Builds name their base by a short name (`FROM debian:bookworm-slim`, so that
# `docker build` works for users as written). With no search registries and
# short-name resolution off, podman resolves it from local storage only and
# never asks a registry; `--pull=never` makes sure of it.
REGISTRIES_CONF = """\
# Written by stackforge_operator.devcluster.image_podman.
unqualified-search-registries = []
short-name-mode = "disabled"
"""


@dataclass(frozen=True)
class Podman:
    """One podman configuration and storage under ``cache_dir``."""

    cache_dir: Path
    binary: str = "podman"

    @property
    def config_dir(self) -> Path:
        return self.cache_dir / "podman-config"

    @property
    def graphroot(self) -> Path:
        return self.cache_dir / "storage"

    @property
    def runroot(self) -> Path:
        return self.cache_dir / "run"

    def prepare(self) -> None:
        """Write the configuration files (only when they differ, to keep mtimes stable)."""
        if shutil.which(self.binary) is None:
            raise ImageBuildError(
                f"{self.binary} is needed to build the images: apt-get install podman "
                "runc uidmap fuse-overlayfs slirp4netns catatonit"
            )
        files = {
            "containers.conf": CONTAINERS_CONF.format(
                tmp_dir=self.runroot / "libpod", network_dir=self.cache_dir / "networks"
            ),
            "storage.conf": STORAGE_CONF.format(graphroot=self.graphroot, runroot=self.runroot),
            "registries.conf": REGISTRIES_CONF,
        }
        self.config_dir.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            path = self.config_dir / name
            if not path.exists() or path.read_text() != text:
                path.write_text(text)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CONTAINERS_CONF": str(self.config_dir / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.config_dir / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(self.config_dir / "registries.conf"),
        }

    def command(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.graphroot), "--runroot", str(self.runroot), *args]

    def run(
        self,
        *args: str,
        check: bool = True,
        timeout: float | None = 600,
        log: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run podman; output is captured, or appended to ``log`` for long builds."""
        argv = self.command(*args)
        env = {**self.env(), **(extra_env or {})}
        if log is None:
            result = subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
            )
        else:
            with log.open("a") as out:
                out.write(f"$ {' '.join(argv)}\n")
                out.flush()
                result = subprocess.run(
                    argv, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
                    timeout=timeout, check=False,
                )  # fmt: skip
        if check and result.returncode != 0:
            detail = result.stderr.strip() if log is None else _tail(log)
            raise ImageBuildError(
                f"podman {' '.join(args[:2])} failed (exit {result.returncode}):\n{detail}"
            )
        return result

    def image_exists(self, reference: str) -> bool:
        return self.run("image", "exists", reference, check=False).returncode == 0

    def inspect(self, reference: str, template: str) -> str:
        return self.run("image", "inspect", "--format", template, reference).stdout.strip()

    def image_id(self, reference: str) -> str | None:
        if not self.image_exists(reference):
            return None
        return self.inspect(reference, "{{.Id}}")

    def image_size(self, reference: str) -> int:
        return int(self.inspect(reference, "{{.Size}}"))

    def label(self, reference: str, key: str) -> str | None:
        if not self.image_exists(reference):
            return None
        value = self.inspect(reference, f'{{{{index .Labels "{key}"}}}}')
        # An absent label prints as "<no value>" with podman's template engine.
        return value if value and value != "<no value>" else None

    def remove_image(self, image_id: str) -> None:
        """Best effort: an image another one still builds on stays until then."""
        self.run("rmi", image_id, check=False)


def _tail(log: Path, lines: int = 40) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return f"(no log at {log})"
    return "\n".join(text.splitlines()[-lines:]) + f"\n(full log: {log})"


def secret_args(ca_bundle: Path | None) -> Sequence[str]:
    """The optional ``ca-bundle`` build secret the operator's Containerfile accepts."""
    return ["--secret", f"id=ca-bundle,src={ca_bundle}"] if ca_bundle else []
