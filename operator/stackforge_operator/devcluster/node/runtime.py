"""containerd for the real node: its configuration, and importing images into it.

containerd keeps its root, state and socket under the node's directory; the
only host path its CRI plugin insists on is /var/run/netns, which the
teardown cleans. runc comes from Debian (with the cgroupfs driver; crun
refuses this host's hybrid cgroup layout).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stackforge_operator.devcluster.image_reference import LOCAL_REGISTRY, local_reference
from stackforge_operator.devcluster.node.network import cni_bin_dir

K8S_NAMESPACE = "k8s.io"
__all__ = ["K8S_NAMESPACE", "LOCAL_REGISTRY", "local_reference"]


class ContainerRuntimeError(RuntimeError):
    pass


@dataclass(frozen=True)
class RuntimePaths:
    root: Path

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
        f"root = {_toml_string(str(paths.root / 'root'))}",
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


def import_image(ctr: Path, paths: RuntimePaths, archive: Path, reference: str) -> None:
    """Import an OCI or docker archive into the CRI namespace, unpacked for the
    overlayfs snapshotter, and name it as pods ask for it.

    Builders name a local image differently (podman prefixes "localhost/"), so
    the image is found by its digest after the import and tagged explicitly.
    """
    before = set(image_names(ctr, paths))
    output = _ctr(ctr, paths, "images", "import", "--snapshotter=overlayfs", "--digests",
                  str(archive))
    imported = [n for n in image_names(ctr, paths) if n not in before]
    # Re-importing an unchanged archive adds no name: take the digest name it printed.
    candidates = imported or [w for w in output.split() if w.startswith("import-")]
    target = local_reference(reference)
    if target in before and not imported:
        return
    if not candidates:
        raise ContainerRuntimeError(
            f"importing {archive} named no image; ctr said: {output.strip()}")
    _ctr(ctr, paths, "images", "tag", "--force", candidates[0], target)
    # One name per image, the one pods use: whatever names the archive carried
    # would otherwise show up in `ctr containers list` instead.
    extra = [n for n in imported if n != target]
    if extra:
        _ctr(ctr, paths, "images", "remove", *extra)


def image_names(ctr: Path, paths: RuntimePaths) -> list[str]:
    return _ctr(ctr, paths, "images", "list", "--quiet").split()
