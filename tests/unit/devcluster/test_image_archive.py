"""The names an image archive carries."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from stackforge_operator.devcluster.image_archive import archive_references
from stackforge_operator.devcluster.image_errors import ImageBuildError
from stackforge_operator.devcluster.image_reference import local_reference


def _archive(path: Path, tags: list[str]) -> Path:
    manifest = json.dumps([{"Config": "c.json", "RepoTags": tags, "Layers": []}]).encode()
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    return path


def test_archive_references_are_the_local_names(tmp_path: Path) -> None:
    qualified = local_reference("stackforge/postgres:15")
    archive = _archive(tmp_path / "a.tar", [qualified])
    assert archive_references(archive) == [qualified]
    # A short RepoTag means the same local name.
    short = _archive(tmp_path / "b.tar", ["stackforge/postgres:15"])
    assert archive_references(short) == [qualified]


def test_an_archive_without_a_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match="no RepoTags"):
        archive_references(_archive(tmp_path / "a.tar", []))
    (tmp_path / "junk.tar").write_bytes(b"not a tar")
    with pytest.raises(ImageBuildError, match="not a docker-archive"):
        archive_references(tmp_path / "junk.tar")
