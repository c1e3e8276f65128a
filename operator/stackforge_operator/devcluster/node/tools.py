"""The node's Go programs that are not part of the control-plane binary:
containerd (with ctr and the runc shim), CoreDNS (the node's plugins only, from
a small module of its own), kube-router (its firewall) and metrics-server (the
metrics API).

Each is built from its Go module at a pinned version with the machine's Go
toolchain, into ``<controlplane module>/bin/node/``. A stamp file beside each
binary records what it was built from, so a warm run rebuilds nothing and a
version change rebuilds exactly that program; a fresh clone copies them from
the build cache (build_cache.py) when they were built before on this machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from stackforge_operator.devcluster import build_cache
from stackforge_operator.devcluster.binary import ControlPlaneBuildError, module_dir
from stackforge_operator.devcluster.node.metrics_server import METRICS_SERVER_VERSION

NODE_BIN_ENV = "STACKFORGE_NODE_BIN_DIR"


@dataclass(frozen=True)
class GoProgram:
    """One binary: ``package`` at ``version`` installed as ``name``; or, ``local``,
    a package of the test cluster's own module (``version`` is then unused: the
    stamp is its sources' digest); or, ``own_module`` too, a directory of that
    module holding a module of its own (its go.mod and go.sum count as sources)."""

    name: str
    package: str
    version: str
    tags: tuple[str, ...] = ()
    local: bool = False
    own_module: bool = False

    def sources(self) -> list[Path]:
        """A local program's files, whose digest is its stamp."""
        directory = module_dir() / self.package
        found = sorted(directory.rglob("*.go"))
        if self.own_module:
            found += [directory / "go.mod", directory / "go.sum"]
        return found

    @property
    def stamp(self) -> str:
        if self.local:
            digest = build_cache.key([p.read_bytes() for p in self.sources()])
            return f"{self.package} local {digest}\n"
        return f"{self.package}@{self.version} tags={','.join(self.tags)}\n"


# containerd 2.3 is the line containerd supports for Kubernetes 1.36; the
# storage drivers it would need cgo or kernel features for are left out.
_CONTAINERD_TAGS = ("no_btrfs", "no_devmapper", "no_zfs")
CONTAINERD_VERSION = "v2.3.7"
PROGRAMS = (
    GoProgram("containerd", "github.com/containerd/containerd/v2/cmd/containerd",
              CONTAINERD_VERSION, _CONTAINERD_TAGS),
    GoProgram("ctr", "github.com/containerd/containerd/v2/cmd/ctr",
              CONTAINERD_VERSION, _CONTAINERD_TAGS),
    GoProgram("containerd-shim-runc-v2",
              "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
              CONTAINERD_VERSION, _CONTAINERD_TAGS),
    # CoreDNS with the node's plugins only (tests/controlplane/coredns/main.go
    # says why; its go.mod pins the version, services.COREDNS_VERSION).
    GoProgram("coredns", "./coredns", "", local=True, own_module=True),
    # The NetworkPolicy enforcer (firewall only; why this one: node/policy.py).
    GoProgram("kube-router", "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router",
              "v2.1.0"),
    # The metrics API (node/metrics_server.py); its own module graph, apart
    # from the control plane's (a k8s.io library line of its own).
    GoProgram("metrics-server", "sigs.k8s.io/metrics-server/cmd/metrics-server",
              METRICS_SERVER_VERSION),
    # The tenant app the real-node tests run (a single-binary image, node/realnode.py).
    GoProgram("testapp", "./cmd/testapp", "", local=True),
)


def node_bin_dir() -> Path:
    if configured := os.environ.get(NODE_BIN_ENV):
        return Path(configured)
    return module_dir() / "bin" / "node"


def is_current(program: GoProgram, directory: Path) -> bool:
    stamp = directory / f"{program.name}.stamp"
    return (directory / program.name).exists() and stamp.exists() and (
        stamp.read_text() == program.stamp
    )


def cache_key(program: GoProgram, go: str) -> str:
    """What the program is built from: its pinned package and tags, the flags, Go."""
    return build_cache.key([build_cache.go_version(go), program.stamp, "-s -w"])


def _install(program: GoProgram, directory: Path, *, log: bool) -> None:
    go = shutil.which("go")
    if go is None:
        raise ControlPlaneBuildError(
            f"the Go toolchain is needed to build {program.name}; install Go or point "
            f"{NODE_BIN_ENV} at a directory holding prebuilt node programs"
        )
    started = time.monotonic()
    cached_as = cache_key(program, go)
    if build_cache.fetch(cached_as, program.name, directory / program.name):
        (directory / f"{program.name}.stamp").write_text(program.stamp)
        if log:
            print(f"{program.name} from the build cache", file=sys.stderr, flush=True)
        return
    if log:
        print(f"building {program.name} ({program.package}@{program.version})",
              file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="stackforge-gobin-") as gobin:
        built = Path(gobin) / Path(program.package).name
        workdir: Path | None = None
        if program.own_module:
            workdir = module_dir() / program.package
            command = [go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(built), "."]
        elif program.local:
            workdir = module_dir()
            command = [go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(built),
                       program.package]
        else:
            command = [go, "install", "-trimpath", "-ldflags=-s -w"]
            if program.tags:
                command.append(f"-tags={' '.join(program.tags)}")
            command.append(f"{program.package}@{program.version}")
        env = {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOBIN": gobin,
               "GOFLAGS": ""}
        result = subprocess.run(command, env=env, check=False, cwd=workdir)
        if result.returncode != 0:
            raise ControlPlaneBuildError(
                f"go {command[1]} {program.package} failed (exit {result.returncode})")
        directory.mkdir(parents=True, exist_ok=True)
        # Move first, stamp last: an interrupted build never looks current.
        shutil.move(str(built), directory / program.name)
    build_cache.store(cached_as, program.name, directory / program.name)
    (directory / f"{program.name}.stamp").write_text(program.stamp)
    if log:
        print(f"built {program.name} in {time.monotonic() - started:.0f}s",
              file=sys.stderr, flush=True)


def ensure_node_tools(directory: Path | None = None, *, log: bool = True) -> Path:
    """Build every program that is missing or was built from another version."""
    directory = directory or node_bin_dir()
    for program in PROGRAMS:
        if not is_current(program, directory):
            _install(program, directory, log=log)
    return directory


if __name__ == "__main__":
    print(ensure_node_tools())
