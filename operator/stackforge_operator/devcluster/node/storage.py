"""Volumes for real pods: a StorageClass and a small provisioner of ``local`` volumes.

Each claim of the class gets a directory under the node's run directory and a
``local`` PersistentVolume pinned to the real node. ``local`` (not
``hostPath``) because the kubelet applies a pod's ``fsGroup`` to it, so a
non-root PostgreSQL can write its data; and the directory lives under the
run directory, so the teardown removes it with everything else. The
provisioner runs as a thread of the process that owns the cluster: it binds
claims the scheduler has placed (WaitForFirstConsumer) and deletes released
volumes with their data.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

STORAGE_CLASS = "stackforge-local"
PROVISIONER = "stackforge.io/devcluster-local"
SELECTED_NODE = "volume.kubernetes.io/selected-node"


def storage_class_manifest() -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS,
                     "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": PROVISIONER,
        # The scheduler picks the node first; the volume follows the pod.
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Delete",
        # The directory has no size limit; a resize only records the new size.
        "allowVolumeExpansion": True,
    }


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
            "storageClassName": STORAGE_CLASS,
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

    def _provision(self, claim: Any) -> None:
        annotations = claim.metadata.annotations or {}
        if (claim.spec.storage_class_name != STORAGE_CLASS or claim.spec.volume_name
                or claim.status.phase != "Pending" or annotations.get(SELECTED_NODE) != self._node):
            return
        # The claim's uid too: a claim deleted and made again under the same name
        # (a replica's lost volume) must get an empty directory, never the old
        # one, which the old volume's release removes at a moment of its own.
        path = self._directory / (f"{claim.metadata.namespace}-{claim.metadata.name}-"
                                  f"{claim.metadata.uid}")
        # Owned by root; the kubelet gives it the pod's fsGroup when mounting.
        path.mkdir(parents=True, exist_ok=True)
        try:
            body: Any = volume_manifest(claim, self._node, path)
            self._core.create_persistent_volume(body)
        except ApiException as error:
            if error.status != 409:  # already provisioned by an earlier event
                raise

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
                shutil.rmtree(volume.spec.local.path, ignore_errors=True)
                try:
                    self._core.delete_persistent_volume(volume.metadata.name)
                except ApiException as error:
                    if error.status != 404:
                        raise
