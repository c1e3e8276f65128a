"""containerd for the real node: its configuration, and importing images into it.

containerd's state and socket live under the node's directory. Its root (the
image content and unpacked layers) lives in a cache directory that outlives
the run, like the image cache: importing the project's images (two of about
500 MB) into a fresh root took most of a start-up. What a run leaves in that
root besides images (container records and their snapshots) is removed at the
next start, before the kubelet sees any of it. The only host paths the CRI
plugin insists on, /var/run/netns and /run/containerd/s (shim sockets), are
cleaned by the teardown. runc comes from Debian (with the cgroupfs driver;
crun refuses this host's hybrid cgroup layout).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from stackforge_operator.devcluster.image_reference import LOCAL_REGISTRY, local_reference
from stackforge_operator.devcluster.node.network import cni_bin_dir

K8S_NAMESPACE = "k8s.io"
STORE_ENV = "STACKFORGE_CONTAINERD_STORE"
__all__ = ["K8S_NAMESPACE", "LOCAL_REGISTRY", "local_reference"]


class ContainerRuntimeError(RuntimeError):
    pass


@dataclass(frozen=True)
class RuntimePaths:
    root: Path
    # containerd's own root (content, snapshots, metadata): kept between runs.
    store: Path = field(default_factory=lambda: default_store())

    @property
    def socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"


def default_store() -> Path:
    if configured := os.environ.get(STORE_ENV):
        return Path(configured)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "stackforge" / "containerd"


def runc_path() -> str:
    found = shutil.which("runc") or ("/usr/sbin/runc" if Path("/usr/sbin/runc").exists() else None)
    if found is None:
        raise ContainerRuntimeError("runc is missing; install Debian's runc package")
    return found


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def containerd_config(paths: RuntimePaths, *, pause_image: str) -> str:
    """containerd 2.3 configuration (format version 4) for one CRI node."""
    cri_runtime = "plugins.'io.containerd.cri.v1.runtime'"
    cri_images = "plugins.'io.containerd.cri.v1.images'"
    lines = [
        "version = 4",
        f"root = {_toml_string(str(paths.store / 'root'))}",
        f"state = {_toml_string(str(paths.root / 'state'))}",
        # Scores cannot be lowered here (no CAP_SYS_RESOURCE); do not try.
        "oom_score = 0",
        "",
        "[debug]",
        "  level = 'warn'",
        "",
        # Format 4 made the servers plugins; their sockets live with the rest.
        "[plugins.'io.containerd.server.v1.grpc']",
        f"  address = {_toml_string(str(paths.socket))}",
        "",
        "[plugins.'io.containerd.server.v1.ttrpc']",
        f"  address = {_toml_string(str(paths.root / 'containerd.sock.ttrpc'))}",
        "",
        f"[{cri_runtime}]",
        "  enable_selinux = false",
        # Containers keep the OOM score they are given, never lower.
        "  restrict_oom_score_adj = true",
        "  enable_unprivileged_ports = true",
        "  enable_unprivileged_icmp = true",
        "",
        f"[{cri_runtime}.containerd]",
        "  default_runtime_name = 'runc'",
        "",
        f"[{cri_runtime}.containerd.runtimes.runc]",
        "  runtime_type = 'io.containerd.runc.v2'",
        "",
        f"[{cri_runtime}.containerd.runtimes.runc.options]",
        f"  BinaryName = {_toml_string(runc_path())}",
        # runc's state with containerd's, not in /run/containerd/runc.
        f"  Root = {_toml_string(str(paths.root / 'runc'))}",
        "  SystemdCgroup = false",
        "",
        f"[{cri_runtime}.cni]",
        f"  bin_dirs = [{_toml_string(cni_bin_dir())}]",
        f"  conf_dir = {_toml_string(str(paths.cni_conf_dir))}",
        "",
        f"[{cri_images}]",
        "  snapshotter = 'overlayfs'",
        # Imported images only: nothing is ever pulled.
        "  discard_unpacked_layers = false",
        "",
        f"[{cri_images}.pinned_images]",
        f"  sandbox = {_toml_string(pause_image)}",
        "",
        "[plugins.'io.containerd.grpc.v1.cri']",
        "  disable_tcp_service = true",
        "  stream_server_address = '127.0.0.1'",
        "  stream_server_port = '0'",
        "",
    ]
    return "\n".join(lines)


def _ctr(ctr: Path, paths: RuntimePaths, *args: str) -> str:
    result = subprocess.run(
        [str(ctr), f"--address={paths.socket}", f"--namespace={K8S_NAMESPACE}", *args],
        capture_output=True, text=True, check=False, timeout=600)
    if result.returncode != 0:
        raise ContainerRuntimeError(f"ctr {' '.join(args)} failed: "
                            f"{result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def forget_containers(ctr: Path, paths: RuntimePaths) -> None:
    """Remove container and sandbox records (and their snapshots) an earlier run
    left in the kept root; images stay. Run before the kubelet starts."""
    containers = _ctr(ctr, paths, "containers", "list", "--quiet").split()
    if containers:
        _ctr(ctr, paths, "containers", "rm", *containers)
    # `sandboxes list` has no --quiet: a table whose first column is the id.
    sandboxes = [row.split()[0] for row in
                 _ctr(ctr, paths, "sandboxes", "list").splitlines()[1:] if row.strip()]
    if sandboxes:
        _ctr(ctr, paths, "sandboxes", "rm", "--force", *sandboxes)


def _imported_record(paths: RuntimePaths) -> Path:
    return paths.store / "imported.json"


def _imported(paths: RuntimePaths) -> dict[str, str]:
    record = _imported_record(paths)
    found: dict[str, str] = json.loads(record.read_text()) if record.exists() else {}
    return found


def is_imported(ctr: Path, paths: RuntimePaths, reference: str, fingerprint: str) -> bool:
    """Whether the kept root holds ``reference`` imported from what ``fingerprint`` names."""
    target = local_reference(reference)
    return _imported(paths).get(target) == fingerprint and target in image_names(ctr, paths)


def import_image(ctr: Path, paths: RuntimePaths, archive: Path, reference: str,
                 fingerprint: str) -> bool:
    """Import an OCI or docker archive into the CRI namespace, unpacked for the
    overlayfs snapshotter, and name it as pods ask for it; returns whether it
    imported anything.

    Skipped when the kept root already holds ``reference`` from an archive of
    the same ``fingerprint`` (what the image was built from). Builders name a
    local image differently (podman prefixes "localhost/"), so the image is
    found by what the import added and tagged explicitly.
    """
    if is_imported(ctr, paths, reference, fingerprint):
        return False
    target = local_reference(reference)
    before = set(image_names(ctr, paths))
    output = _ctr(ctr, paths, "images", "import", "--snapshotter=overlayfs", "--digests",
                  str(archive))
    imported = [n for n in image_names(ctr, paths) if n not in before]
    # Re-importing an unchanged archive adds no name: take the digest name it printed.
    candidates = imported or [w for w in output.split() if w.startswith("import-")]
    if candidates:
        _ctr(ctr, paths, "images", "tag", "--force", candidates[0], target)
    elif target not in before:
        raise ContainerRuntimeError(
            f"importing {archive} named no image; ctr said: {output.strip()}")
    # One name per image, the one pods use: whatever names the archive carried
    # would otherwise show up in `ctr containers list` instead.
    extra = [n for n in imported if n != target]
    if extra:
        _ctr(ctr, paths, "images", "remove", *extra)
    record = _imported(paths)
    record[target] = fingerprint
    _imported_record(paths).write_text(json.dumps(record, indent=1, sort_keys=True))
    return True


def image_names(ctr: Path, paths: RuntimePaths) -> list[str]:
    return _ctr(ctr, paths, "images", "list", "--quiet").split()
