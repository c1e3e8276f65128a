"""The tenant's default PostgreSQL major is the one the project's images serve."""

from __future__ import annotations

import re
from pathlib import Path

from stackforge_operator.models.tenant import POSTGRES_DEFAULT_VERSION

IMAGES = Path(__file__).resolve().parents[2] / "images"


def _majors(containerfile: Path, package: str) -> set[int]:
    return {int(m) for m in re.findall(rf"\b{package}-(\d+)\b", containerfile.read_text())}


def test_the_default_major_is_the_server_and_the_runners_client_the_images_ship() -> None:
    """It was 16 beside images of 15: a tenant created without a version asked for
    stackforge/postgres:16, which the project cannot build, and pg_dump 15 refuses
    a 16 server, so its backups would fail too."""
    assert _majors(IMAGES / "postgres" / "Containerfile", "postgresql") == {
        POSTGRES_DEFAULT_VERSION}
    assert _majors(IMAGES / "operator" / "Containerfile", "postgresql-client") == {
        POSTGRES_DEFAULT_VERSION}
