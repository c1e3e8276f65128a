"""Volumes for real pods: two StorageClasses and a small provisioner of ``local`` volumes.

Each claim of either class gets a directory under the node's run directory
and a ``local`` PersistentVolume pinned to the real node. ``local`` (not
``hostPath``) because the kubelet applies a pod's ``fsGroup`` to it, so a
non-root PostgreSQL can write its data; and the directory lives under the
run directory, so the teardown removes it with everything else. The
provisioner runs as a thread of the process that owns the cluster: it binds
claims the scheduler has placed (WaitForFirstConsumer), grows claims whose
request grew, and deletes released volumes with their data.

The default class's directories have no size: the disk under them is shared.
The sized class mounts a tmpfs of the claim's size on the directory, so a
volume can really fill up ("No space left on device") and really grow: a
remount with a larger size is online and seen at once inside the pod (the
kubelet's bind mount shares the superblock). tmpfs rather than a loop-mounted
ext4 image because growing ext4 online needs CAP_SYS_RESOURCE, which these
machines' root does not have. Being memory, a sized volume loses its data
when the node's mounts go (the teardown); a kubelet restart keeps it.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

STORAGE_CLASS = "stackforge-local"
SIZED_STORAGE_CLASS = "stackforge-local-sized"
_CLASSES = (STORAGE_CLASS, SIZED_STORAGE_CLASS)
PROVISIONER = "stackforge.io/devcluster-local"
SELECTED_NODE = "volume.kubernetes.io/selected-node"


def storage_class_manifest(name: str = STORAGE_CLASS) -> dict[str, Any]:
    annotations = ({"storageclass.kubernetes.io/is-default-class": "true"}
                   if name == STORAGE_CLASS else {})
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name, "annotations": annotations},
        "provisioner": PROVISIONER,
        # The scheduler picks the node first; the volume follows the pod.
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Delete",
        # The provisioner is also the resizer: a plain directory only records
        # the new size, a sized volume is remounted larger.
        "allowVolumeExpansion": True,
    }


def storage_class_manifests() -> list[dict[str, Any]]:
    return [storage_class_manifest(name) for name in _CLASSES]


def size_bytes(quantity: str) -> int:
    """A claim's size in bytes, rounded up to whole pages (tmpfs counts pages)."""
    page = 4096
    return -(-int(parse_quantity(quantity)) // page) * page


def tmpfs_options(quantity: str) -> str:
    # mode 0755 root-owned like a fresh disk's root; the kubelet applies the
    # pod's fsGroup when it mounts the volume.
    return f"size={size_bytes(quantity)},mode=0755"


def growth(requested: str, capacity: str | None) -> bool:
    """Whether a bound claim asks for more than its volume has."""
    return capacity is None or parse_quantity(requested) > parse_quantity(capacity)


def volume_manifest(claim: Any, node: str, path: Path) -> dict[str, Any]:
    name = f"pv-{claim.metadata.uid}"
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {
            "capacity": {"storage": claim.spec.resources.requests["storage"]},
            "accessModes": claim.spec.access_modes,
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": claim.spec.storage_class_name,
            "volumeMode": "Filesystem",
            "local": {"path": str(path)},
            "claimRef": {"namespace": claim.metadata.namespace, "name": claim.metadata.name,
                         "uid": claim.metadata.uid},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
        },
    }


class LocalVolumeProvisioner:
    def __init__(self, api: client.ApiClient, node: str, directory: Path) -> None:
        self._core = client.CoreV1Api(api)
        self._node = node
        self._directory = directory
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        for target in (self._watch_claims, self._watch_volumes):
            thread = threading.Thread(target=self._forever, args=(target,), daemon=True,
                                      name=f"provisioner-{target.__name__}")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _forever(self, target: Any) -> None:
        while not self._stop.is_set():
            try:
                target()
            except Exception:  # the API went away or a watch expired: start over
                self._stop.wait(1)

    def _watch_claims(self) -> None:
        stream = watch.Watch()
        for event in stream.stream(self._core.list_persistent_volume_claim_for_all_namespaces,
                                   timeout_seconds=5):
            if self._stop.is_set():
                stream.stop()
                return
            claim = event["object"]
            if event["type"] in ("ADDED", "MODIFIED"):
                self._provision(claim)
                self._resize(claim)

    def _provision(self, claim: Any) -> None:
        annotations = claim.metadata.annotations or {}
        if (claim.spec.storage_class_name not in _CLASSES
                or claim.spec.volume_name or claim.status.phase != "Pending"
                or annotations.get(SELECTED_NODE) != self._node):
            return
        # The claim's uid too: a claim deleted and made again under the same name
        # (a replica's lost volume) must get an empty directory, never the old
        # one, which the old volume's release removes at a moment of its own.
        path = self._directory / (f"{claim.metadata.namespace}-{claim.metadata.name}-"
                                  f"{claim.metadata.uid}")
        # Owned by root; the kubelet gives it the pod's fsGroup when mounting.
        path.mkdir(parents=True, exist_ok=True)
        if claim.spec.storage_class_name == SIZED_STORAGE_CLASS and not path.is_mount():
            subprocess.run(["mount", "-t", "tmpfs", "-o",
                            tmpfs_options(claim.spec.resources.requests["storage"]),
                            "stackforge-volume", str(path)], check=True, capture_output=True)
        try:
            body: Any = volume_manifest(claim, self._node, path)
            self._core.create_persistent_volume(body)
        except ApiException as error:
            if error.status != 409:  # already provisioned by an earlier event
                raise

    def _resize(self, claim: Any) -> None:
        """Grow a bound claim's volume to its new request, as an external resizer does:
        the volume first (a sized one remounted larger, online), then the
        PersistentVolume's capacity, then the claim's status, which is what
        says the growth is done."""
        if (claim.spec.storage_class_name not in _CLASSES
                or claim.status.phase != "Bound" or not claim.spec.volume_name):
            return
        requested = claim.spec.resources.requests["storage"]
        if not growth(requested, (claim.status.capacity or {}).get("storage")):
            return
        volume: Any = self._core.read_persistent_volume(claim.spec.volume_name)
        annotations = volume.metadata.annotations or {}
        if annotations.get("pv.kubernetes.io/provisioned-by") != PROVISIONER:
            return
        if claim.spec.storage_class_name == SIZED_STORAGE_CLASS:
            subprocess.run(["mount", "-o", f"remount,size={size_bytes(requested)}",
                            volume.spec.local.path], check=True, capture_output=True)
        body: Any = {"spec": {"capacity": {"storage": requested}}}
        self._core.patch_persistent_volume(volume.metadata.name, body)
        status: Any = {"status": {"capacity": {"storage": requested}}}
        self._core.patch_namespaced_persistent_volume_claim_status(
            claim.metadata.name, claim.metadata.namespace, status)

    def _watch_volumes(self) -> None:
        stream = watch.Watch()
        for event in stream.stream(self._core.list_persistent_volume, timeout_seconds=5):
            if self._stop.is_set():
                stream.stop()
                return
            volume = event["object"]
            annotations = volume.metadata.annotations or {}
            if (annotations.get("pv.kubernetes.io/provisioned-by") == PROVISIONER
                    and volume.status.phase == "Released" and event["type"] != "DELETED"):
                if Path(volume.spec.local.path).is_mount():
                    # Lazily: the released volume's last pod may still be going.
                    subprocess.run(["umount", "--lazy", volume.spec.local.path],
                                   check=False, capture_output=True)
                shutil.rmtree(volume.spec.local.path, ignore_errors=True)
                try:
                    self._core.delete_persistent_volume(volume.metadata.name)
                except ApiException as error:
                    if error.status != 404:
                        raise
