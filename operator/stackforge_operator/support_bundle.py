"""Pure: a support bundle (`kubectl stackforge report`, and the evidence the operator
captures when a tenant is isolated): its files, made safe to hand over, and its archive.

Every Secret's values are replaced by their length (its keys stay: what a
person debugging needs is which keys exist), as is kubectl's
last-applied-configuration annotation, which carries a Secret applied by
kubectl whole. The archive holds a ``MANIFEST.sha256`` (``sha256sum -c``
format) so that the bundle can be verified where it is read.
"""

from __future__ import annotations

import copy
import hashlib
import io
import tarfile
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
MANIFEST = "MANIFEST.sha256"


def redacted(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` without a Secret's values."""
    out = copy.deepcopy(dict(obj))
    if out.get("kind") == "Secret":
        for field in ("data", "stringData"):
            if isinstance(out.get(field), dict):
                out[field] = {k: f"<redacted: {len(str(v))} characters>"
                              for k, v in out[field].items()}
        annotations = (out.get("metadata") or {}).get("annotations") or {}
        if LAST_APPLIED in annotations:
            annotations[LAST_APPLIED] = "<redacted>"
        (out.get("metadata") or {}).pop("managedFields", None)
    return out


def assemble(objects: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]],
             logs: Mapping[tuple[str, str], str], extra: Mapping[str, str]) -> dict[str, bytes]:
    """The bundle's files: ``objects/<Kind>/<name>.yaml`` (redacted), ``events.yaml``,
    ``logs/<pod>/<container>.log`` (``logs``: (pod, container) -> text), and ``extra``
    (path -> text)."""
    files = {f"objects/{o['kind']}/{o['metadata']['name']}.yaml":
             yaml.safe_dump(redacted(o), sort_keys=False).encode() for o in objects}
    files["events.yaml"] = yaml.safe_dump(list(events), sort_keys=False).encode()
    files.update({f"logs/{pod}/{container}.log": text.encode()
                  for (pod, container), text in logs.items()})
    files.update({path: text.encode() for path, text in extra.items()})
    return files


def containers(objects: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(pod, container) of every Pod among ``objects``: whose logs a bundle holds."""
    return [(o["metadata"]["name"], c["name"]) for o in objects if o["kind"] == "Pod"
            for c in (o.get("spec") or {}).get("containers") or []]


def manifest(files: Mapping[str, bytes]) -> bytes:
    return "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n"
                   for name, data in sorted(files.items())).encode()


def archive(files: Mapping[str, bytes], root: str) -> bytes:
    """A gzipped tar of ``files`` under ``root/``, with their sha256 manifest."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in sorted({**files, MANIFEST: manifest(files)}.items()):
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def verify(data: bytes) -> dict[str, bytes]:
    """The files of an archive whose manifest matches them (ValueError otherwise)."""
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            extracted = tar.extractfile(member)
            if extracted is not None:
                files[member.name.split("/", 1)[1]] = extracted.read()
    listed = files.pop(MANIFEST, None)
    if listed is None or listed != manifest(files):
        raise ValueError("the bundle's files do not match its MANIFEST.sha256")
    return files
