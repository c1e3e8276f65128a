"""Single-binary images (the pause image, CoreDNS) written as OCI archives.

A static binary needs no base image and no build tool: one layer holding the
file, an image config naming the entrypoint, a manifest and an index — the
OCI image layout that ``ctr images import`` reads. Written deterministically
(fixed timestamps and ownership), so the same binary always gives the same
image digest and a warm run imports nothing new.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
# Also what containerd's importer reads as the image's name.
CONTAINERD_NAME_ANNOTATION = "io.containerd.image.name"


@dataclass(frozen=True)
class ScratchImage:
    """``binary`` placed at ``path_in_image`` and run as ``entrypoint``."""

    reference: str
    binary: Path
    path_in_image: str
    entrypoint: tuple[str, ...]
    user: str = "65534:65534"


def _tar_member(name: str, data: bytes, mode: int) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    return info, data


def _layer(image: ScratchImage) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        parts = image.path_in_image.strip("/").split("/")
        for depth in range(1, len(parts)):
            directory = tarfile.TarInfo("/".join(parts[:depth]))
            directory.type = tarfile.DIRTYPE
            directory.mode = 0o755
            directory.mtime = 0
            tar.addfile(directory)
        info, data = _tar_member("/".join(parts), image.binary.read_bytes(), 0o755)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _blob(content: bytes, media_type: str) -> tuple[dict[str, object], bytes]:
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    return {"mediaType": media_type, "digest": digest, "size": len(content)}, content


def write_archive(image: ScratchImage, archive: Path) -> str:
    """Write the image as an OCI archive (tar); returns the manifest digest."""
    layer = _layer(image)
    layer_descriptor, _ = _blob(layer, OCI_LAYER)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": list(image.entrypoint), "User": image.user,
                   "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_descriptor["digest"]]},
    }
    config_descriptor, config_bytes = _blob(
        json.dumps(config, sort_keys=True).encode(), OCI_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_descriptor,
                "layers": [layer_descriptor]}
    manifest_descriptor, manifest_bytes = _blob(
        json.dumps(manifest, sort_keys=True).encode(), OCI_MANIFEST)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{**manifest_descriptor, "annotations": {
            REF_NAME_ANNOTATION: image.reference,
            CONTAINERD_NAME_ANNOTATION: image.reference,
        }}],
    }
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index, sort_keys=True).encode(),
    }
    for descriptor, content in ((layer_descriptor, layer), (config_descriptor, config_bytes),
                                (manifest_descriptor, manifest_bytes)):
        digest = str(descriptor["digest"]).split(":", 1)[1]
        files[f"blobs/sha256/{digest}"] = content
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_suffix(".partial")
    with tarfile.open(partial, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info, data = _tar_member(name, content, 0o644)
            tar.addfile(info, io.BytesIO(data))
    partial.replace(archive)
    return str(manifest_descriptor["digest"])
