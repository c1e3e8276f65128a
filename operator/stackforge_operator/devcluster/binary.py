"""Find, and build when missing or stale, the control-plane multi-call binary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from stackforge_operator.devcluster import build_cache

# The Kubernetes release the Go module pins; stamped into the binaries so that
# `kubectl version` and discovery report a real version instead of v0.0.0.
KUBERNETES_VERSION = "v1.36.3"

BINARY_ENV = "STACKFORGE_CONTROLPLANE_BIN"
MODULE_ENV = "STACKFORGE_CONTROLPLANE_MODULE"


class ControlPlaneBuildError(RuntimeError):
    pass


def module_dir() -> Path:
    """The Go module, found from the environment or the source checkout."""
    if configured := os.environ.get(MODULE_ENV):
        return Path(configured)
    # operator/stackforge_operator/devcluster/binary.py -> repository root
    return Path(__file__).resolve().parents[3] / "tests" / "controlplane"


def default_binary_path() -> Path:
    if configured := os.environ.get(BINARY_ENV):
        return Path(configured)
    return module_dir() / "bin" / "controlplane"


def _sources(module: Path) -> list[Path]:
    return [p for p in [*sorted(module.glob("*.go")), module / "go.mod", module / "go.sum"]
            if p.exists()]


def _newest_source_mtime(module: Path) -> float:
    return max(p.stat().st_mtime for p in _sources(module))


def _ldflags() -> str:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    return " ".join(
        [
            "-s -w",
            f"-X k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}",
            f"-X k8s.io/component-base/version.gitMajor={major}",
            f"-X k8s.io/component-base/version.gitMinor={minor}",
            "-X k8s.io/component-base/version.gitTreeState=clean",
        ]
    )


def cache_key(module: Path, go: str) -> str:
    """What the binary is built from: every source's name and bytes, the flags, Go."""
    parts: list[str | bytes] = [build_cache.go_version(go), _ldflags()]
    for source in _sources(module):
        parts += [source.name, source.read_bytes()]
    return build_cache.key(parts)


def is_stale(binary: Path, module: Path) -> bool:
    if not binary.exists():
        return True
    if not module.exists():
        # An installed binary without sources next to it cannot be stale.
        return False
    return binary.stat().st_mtime < _newest_source_mtime(module)


def build(binary: Path, module: Path, *, log: bool = True) -> None:
    go = shutil.which("go")
    if go is None:
        raise ControlPlaneBuildError(
            "the Go toolchain is needed to build the local control plane; install Go "
            f"or point {BINARY_ENV} at a prebuilt binary"
        )
    ldflags = _ldflags()
    binary.parent.mkdir(parents=True, exist_ok=True)
    cached_as = cache_key(module, go)
    if build_cache.fetch(cached_as, binary.name, binary):
        if log:
            print(f"control plane from the build cache ({build_cache.cache_root()})",
                  file=sys.stderr, flush=True)
        return
    env = {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}
    if log:
        print(
            f"building the control plane ({KUBERNETES_VERSION}) in {module}; "
            "a cold build (with kubelet and kube-proxy) takes up to 15 minutes on 2 cores",
            file=sys.stderr,
            flush=True,
        )
    started = time.monotonic()
    tmp = binary.with_suffix(".tmp")
    result = subprocess.run(
        [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(tmp), "."],
        cwd=module,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise ControlPlaneBuildError(f"go build failed with exit code {result.returncode}")
    # Rename last, so an interrupted build never leaves a binary that looks fresh.
    tmp.replace(binary)
    build_cache.store(cached_as, binary.name, binary)
    if log:
        print(
            f"built {binary} in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True
        )


def ensure_binary(binary: Path | None = None, *, log: bool = True) -> Path:
    """Return a usable binary, building it first when it is missing or older than its sources."""
    binary = binary or default_binary_path()
    module = module_dir()
    if is_stale(binary, module):
        if not module.exists():
            raise ControlPlaneBuildError(
                f"no control-plane binary at {binary} and no Go module at {module} to build it"
            )
        build(binary, module, log=log)
    return binary


def kwok_source_dir(module: Path | None = None) -> Path:
    """Where the kwok module the binary is built from lies in the Go module cache.

    Downloaded there first when the cache lacks it: a binary up to date from the
    build cache needs no module source to be built, but the kwok stages are read
    from that source (``go list`` names no directory for a module not extracted).
    """
    module = module or module_dir()
    go_env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    result = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/kwok"],
        cwd=module, env=go_env, capture_output=True, text=True, check=False,
    )
    directory = result.stdout.strip()
    if result.returncode == 0 and not directory:
        result = subprocess.run(
            ["go", "mod", "download", "-json", "sigs.k8s.io/kwok"],
            cwd=module, env=go_env, capture_output=True, text=True, check=False,
        )
        try:
            directory = str(json.loads(result.stdout or "{}").get("Dir") or "")
        except json.JSONDecodeError:
            directory = ""
    if result.returncode != 0 or not directory:
        raise ControlPlaneBuildError(f"cannot locate the kwok module: "
                                     f"{(result.stderr or result.stdout).strip()}")
    return Path(directory)
