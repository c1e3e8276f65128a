"""The project's container images, built locally with podman and cached.

What the test launcher calls: :func:`ensure_images` (or :func:`ensure_base`
and :func:`ensure_image`) builds ``images/*/Containerfile`` against a locally
made Debian base and saves each image as an archive named under
``localhost/``, which the real node imports (node/runtime.py). Nothing is
pulled from a registry.

A build is keyed by a digest of its inputs (image_context.py): the
Containerfile, the context files it copies, the base's identity. When the
digest matches the last build's, podman build does not run at all and the
saved archive is reused. The cache lives in ``$STACKFORGE_IMAGE_CACHE``, by
default ``$XDG_CACHE_HOME/stackforge/images`` (``~/.cache/...``): the base
tarball, podman's private configuration and storage, the archives.

    python -m stackforge_operator.devcluster.images build
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

import yaml

from stackforge_operator.devcluster.image_archive import archive_references
from stackforge_operator.devcluster.image_base import BaseImage, ensure_base_image
from stackforge_operator.devcluster.image_context import inputs_digest
from stackforge_operator.devcluster.image_errors import ImageBuildError
from stackforge_operator.devcluster.image_podman import Podman, secret_args
from stackforge_operator.devcluster.image_reference import LOCAL_REGISTRY, local_reference

__all__ = [
    "LOCAL_REGISTRY",
    "PROJECT_CATALOG",
    "BaseImage",
    "BuiltImage",
    "ImageBuildError",
    "ImageSpec",
    "archive_references",
    "default_cache_dir",
    "default_specs",
    "ensure_base",
    "ensure_image",
    "ensure_images",
    "local_reference",
    "podman_for",
]

CACHE_ENV: Final = "STACKFORGE_IMAGE_CACHE"
# The build's input digest, also as a label on the image, so `podman inspect`
# tells which inputs an image was built from.
INPUTS_LABEL: Final = "io.stackforge.image.inputs"
# Bumped when the way images are built or saved changes: every cached image is
# then rebuilt once.
RECIPE_VERSION: Final = "1"
BUILD_TIMEOUT_SECONDS: Final = 1800
# A CA bundle the build may trust for pip's HTTPS (networks that intercept TLS):
# pip's own setting on the host first, then the usual variables, then Debian's.
CA_BUNDLE_SOURCES: Final = ("PIP_CERT", "SSL_CERT_FILE")
DEBIAN_CA_BUNDLE: Final = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class ImageSpec:
    """One image: its name and tag, its Containerfile and its build context."""

    name: str
    tag: str
    containerfile: Path
    context: Path

    @property
    def reference(self) -> str:
        """The short reference pods and manifests use."""
        return f"{self.name}:{self.tag}"

    @property
    def local_reference(self) -> str:
        return local_reference(self.reference)

    @property
    def slug(self) -> str:
        return self.reference.replace("/", "_").replace(":", "_")


@dataclass(frozen=True)
class BuiltImage:
    """A built (or cached) image and its saved archive."""

    reference: str
    local_reference: str
    archive_path: Path
    image_id: str
    size_bytes: int
    built: bool
    seconds: float
    inputs: str


def repository_root() -> Path:
    # operator/stackforge_operator/devcluster/images.py -> repository root
    return Path(__file__).resolve().parents[3]


def operator_version(root: Path) -> str:
    """The version in pyproject.toml: the tag the operator image is built with."""
    with (root / "pyproject.toml").open("rb") as data:
        return str(tomllib.load(data)["project"]["version"])


# The Kafka release images/kafka/pom.xml resolves; the image's tag, which a
# tenant's kafka.version names.
KAFKA_VERSION: Final = "4.1.1"


def default_specs(root: Path | None = None) -> tuple[ImageSpec, ...]:
    root = root or repository_root()
    images = root / "images"
    if not images.is_dir():
        raise ImageBuildError(f"no images/ directory in {root}: the images build from a checkout")
    return (
        ImageSpec("stackforge/postgres", "15", images / "postgres" / "Containerfile",
                  images / "postgres"),
        ImageSpec("stackforge/pgbouncer", "1.18", images / "pgbouncer" / "Containerfile",
                  images / "pgbouncer"),
        ImageSpec("stackforge/redis", "7.0", images / "redis" / "Containerfile",
                  images / "redis"),
        ImageSpec("stackforge/kafka", KAFKA_VERSION, images / "kafka" / "Containerfile",
                  images / "kafka"),
        ImageSpec("stackforge/stackforge-operator", operator_version(root),
                  images / "operator" / "Containerfile", root),
    )  # fmt: skip


# Catalog entries (image_catalog.py) for the roles the project's own images
# serve where the catalog's defaults name upstream images: the test cluster's
# operator runs with them, so every pod it makes runs an image built here.
PROJECT_CATALOG: Final = {
    "redis": "stackforge/redis:{version}",
    # The Redis image carries the exporter (images/redis/Containerfile).
    "redis-exporter": "stackforge/redis:7.0",
    "kafka": "stackforge/kafka:{version}",
    # So does the Kafka image (its own exporter, images/kafka/exporter).
    "kafka-exporter": f"stackforge/kafka:{KAFKA_VERSION}",
}


def write_project_catalog(path: Path) -> Path:
    """PROJECT_CATALOG as the file STACKFORGE_IMAGE_CATALOG names; returns ``path``."""
    path.write_text(yaml.safe_dump(PROJECT_CATALOG))
    return path


def default_cache_dir() -> Path:
    if configured := os.environ.get(CACHE_ENV):
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "stackforge" / "images"


def podman_for(cache_dir: Path | None = None) -> Podman:
    """The podman (private configuration and storage) of a cache directory, ready to run."""
    podman = Podman((cache_dir or default_cache_dir()).resolve())
    podman.prepare()
    return podman


@contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    # Two test sessions building at once would race on storage and archives.
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_base(cache_dir: Path | None = None) -> BaseImage:
    """``debian:bookworm-slim`` in the cache's podman storage (mmdebstrap when missing)."""
    podman = podman_for(cache_dir)
    with _locked(podman.cache_dir):
        return ensure_base_image(podman)


def _ca_bundle() -> Path | None:
    for variable in CA_BUNDLE_SOURCES:
        if (value := os.environ.get(variable)) and Path(value).is_file():
            return Path(value)
    return DEBIAN_CA_BUNDLE if DEBIAN_CA_BUNDLE.is_file() else None


def _record_path(podman: Podman, spec: ImageSpec) -> Path:
    return podman.cache_dir / "images" / f"{spec.slug}.json"


def _cached(podman: Podman, spec: ImageSpec, inputs: str) -> BuiltImage | None:
    """The last build's result when its inputs were these and its archive is still there."""
    record = _record_path(podman, spec)
    if not record.exists():
        return None
    saved = json.loads(record.read_text())
    archive = Path(saved["archive_path"])
    if saved.get("inputs") != inputs or not archive.exists():
        return None
    # The archive is what counts; podman's storage may have been pruned since.
    if podman.image_id(spec.local_reference) != saved["image_id"]:
        podman.run("load", "--input", str(archive), timeout=600)
    return BuiltImage(
        reference=spec.reference, local_reference=spec.local_reference, archive_path=archive,
        image_id=str(saved["image_id"]), size_bytes=int(saved["size_bytes"]), built=False,
        seconds=0.0, inputs=inputs,
    )  # fmt: skip


def _build(podman: Podman, spec: ImageSpec, inputs: str) -> BuiltImage:
    started = time.monotonic()
    directory = podman.cache_dir / "images"
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / f"{spec.slug}.log"
    log.write_text("")
    previous = podman.image_id(spec.local_reference)
    print(f"building {spec.reference} (log: {log})", file=sys.stderr, flush=True)
    podman.run(
        "build", "--pull=never", "--network=host", "--layers",
        "--file", str(spec.containerfile),
        "--tag", spec.local_reference,
        "--label", f"{INPUTS_LABEL}={inputs}",
        *secret_args(_ca_bundle()),
        str(spec.context),
        log=log, timeout=BUILD_TIMEOUT_SECONDS,
    )  # fmt: skip
    image_id = podman.image_id(spec.local_reference)
    if image_id is None:
        raise ImageBuildError(f"podman build succeeded but {spec.local_reference} is missing")
    archive = directory / f"{spec.slug}.tar"
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    podman.run("save", "--format", "docker-archive", "--output", str(partial),
               spec.local_reference, log=log, timeout=600)  # fmt: skip
    partial.replace(archive)
    if previous and previous != image_id:
        # The replaced image is unreachable by name now; its unshared layers go.
        podman.remove_image(previous)
    image = BuiltImage(
        reference=spec.reference, local_reference=spec.local_reference, archive_path=archive,
        image_id=image_id, size_bytes=podman.image_size(spec.local_reference), built=True,
        seconds=time.monotonic() - started, inputs=inputs,
    )  # fmt: skip
    record = {**asdict(image), "archive_path": str(archive)}
    _record_path(podman, spec).write_text(json.dumps(record, indent=1, sort_keys=True))
    return image


def ensure_image(
    spec: ImageSpec, cache_dir: Path | None = None, *, base: BaseImage | None = None
) -> BuiltImage:
    """``spec`` built and saved, or taken from the cache when its inputs are unchanged."""
    started = time.monotonic()
    base = base or ensure_base(cache_dir)
    podman = podman_for(cache_dir)
    inputs = inputs_digest(
        spec.containerfile,
        spec.context,
        {"reference": spec.local_reference, "base": base.identity, "recipe": RECIPE_VERSION},
    )
    with _locked(podman.cache_dir):
        cached = _cached(podman, spec, inputs)
        image = cached or _build(podman, spec, inputs)
    return BuiltImage(**{**asdict(image), "seconds": time.monotonic() - started})


def ensure_images(
    specs: Sequence[ImageSpec] | None = None, cache_dir: Path | None = None
) -> list[BuiltImage]:
    """Every image, one after the other (builds are CPU-heavy; 2 cores are the norm here)."""
    specs = default_specs() if specs is None else specs
    base = ensure_base(cache_dir)
    return [ensure_image(spec, cache_dir, base=base) for spec in specs]


def _report(image: BuiltImage) -> str:
    state = "built" if image.built else "cached"
    return (
        f"{image.reference}  {image.size_bytes / 1e6:.0f} MB  {state}  "
        f"{image.seconds:.1f}s  {image.archive_path}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stackforge_operator.devcluster.images",
        description="Build the project's images locally with podman (cached by their inputs).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build (or reuse) every image and save its archive")
    build.add_argument("--cache-dir", type=Path, default=None,
                       help=f"default: ${CACHE_ENV} or ~/.cache/stackforge/images")  # fmt: skip
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        base = ensure_base(args.cache_dir)
        state = "made" if base.built else "cached"
        print(f"{base.reference} (base)  {state}  {base.seconds:.1f}s  {base.tarball}", flush=True)
        for spec in default_specs():
            print(_report(ensure_image(spec, args.cache_dir, base=base)), flush=True)
    except ImageBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"total {time.monotonic() - started:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
