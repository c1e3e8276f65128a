"""What a saved image archive names itself.

The archives are docker-archive tarballs (``podman save --format
docker-archive``). ``ctr images import`` names each image from the archive's
``RepoTags``; the builder tags them with their ``localhost/`` names
(image_reference.py), and the real node imports them under exactly those.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from stackforge_operator.devcluster.image_errors import ImageBuildError
from stackforge_operator.devcluster.image_reference import local_reference


def archive_references(archive: Path) -> list[str]:
    """The names a docker-archive tarball carries, in their local form."""
    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("manifest.json")
            if member is None:
                raise KeyError("manifest.json")
            manifest = json.loads(member.read())
    except (OSError, KeyError, tarfile.TarError, json.JSONDecodeError) as error:
        raise ImageBuildError(f"{archive} is not a docker-archive tarball: {error}") from error
    tags = [str(tag) for entry in manifest for tag in entry.get("RepoTags") or []]
    if not tags:
        raise ImageBuildError(f"{archive} names no image (no RepoTags)")
    return [local_reference(tag) for tag in tags]
