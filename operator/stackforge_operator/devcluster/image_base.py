"""The base every image builds FROM: Debian bookworm made locally with mmdebstrap.

No registry is needed: mmdebstrap assembles a minimal Debian from Debian's
package mirrors into a tarball, and ``podman import`` makes it the image the
Containerfiles name, ``debian:bookworm-slim``. Like the published slim image,
it leaves out manual pages, documentation (copyright files stay) and message
translations, also for every package installed on top of it later.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from stackforge_operator.devcluster.image_errors import ImageBuildError
from stackforge_operator.devcluster.image_podman import Podman

BASE_REFERENCE: Final = "debian:bookworm-slim"
SUITE: Final = "bookworm"
# The base's identity (the tarball's sha256) travels with the imported image,
# so a re-import of the same tarball is recognised as the same base.
IDENTITY_LABEL: Final = "io.stackforge.image.base-identity"

# dpkg settings the slim image has too; mmdebstrap writes them into the base's
# /etc/dpkg/dpkg.cfg.d, so they also apply to the packages the builds add.
DPKG_OPTIONS: Final = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/lintian/*",
)
APT_OPTIONS: Final = ('Acquire::Languages "none"',)


@dataclass(frozen=True)
class BaseImage:
    """The imported base: its name in podman and what it was made from."""

    reference: str
    tarball: Path
    identity: str
    image_id: str
    built: bool
    seconds: float


def mmdebstrap_command(output: Path) -> list[str]:
    return [
        "mmdebstrap",
        "--variant=minbase",
        "--format=tar",
        *(f"--dpkgopt={option}" for option in DPKG_OPTIONS),
        *(f"--aptopt={option}" for option in APT_OPTIONS),
        SUITE,
        str(output),
    ]


def _make_tarball(tarball: Path, log: Path) -> None:
    if shutil.which("mmdebstrap") is None:
        raise ImageBuildError(
            "mmdebstrap is needed to make the base image: apt-get install mmdebstrap"
        )
    print(
        f"making the {SUITE} base with mmdebstrap (about 1 minute on 2 cores)",
        file=sys.stderr, flush=True,
    )  # fmt: skip
    partial = tarball.with_suffix(".partial")
    with log.open("a") as out:
        result = subprocess.run(
            mmdebstrap_command(partial), stdout=out, stderr=subprocess.STDOUT,
            timeout=1800, check=False,
        )  # fmt: skip
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise ImageBuildError(f"mmdebstrap failed (exit {result.returncode}); see {log}")
    # Renamed last: an interrupted run never leaves a tarball that looks complete.
    partial.replace(tarball)


def _identity(tarball: Path, memo: Path) -> str:
    """The tarball's sha256, remembered per size and mtime (hashing 150 MB takes a while)."""
    stat = tarball.stat()
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if memo.exists():
        saved = json.loads(memo.read_text())
        if saved.get("key") == key:
            return str(saved["sha256"])
    digest = hashlib.sha256()
    with tarball.open("rb") as data:
        for chunk in iter(lambda: data.read(1 << 20), b""):
            digest.update(chunk)
    memo.write_text(json.dumps({"key": key, "sha256": digest.hexdigest()}))
    return digest.hexdigest()


def ensure_base_image(podman: Podman) -> BaseImage:
    """The base in podman's storage, made and imported when missing."""
    started = time.monotonic()
    directory = podman.cache_dir / "base"
    directory.mkdir(parents=True, exist_ok=True)
    tarball = directory / f"{SUITE}-minbase.tar"
    log = directory / "build.log"
    built = False
    if not tarball.exists():
        _make_tarball(tarball, log)
        built = True
    identity = _identity(tarball, directory / "identity.json")
    if podman.label(BASE_REFERENCE, IDENTITY_LABEL) != identity:
        podman.run(
            "import", "--change", f"LABEL {IDENTITY_LABEL}={identity}",
            "--change", 'CMD ["bash"]', str(tarball), BASE_REFERENCE,
            log=log, timeout=600,
        )  # fmt: skip
        built = True
    image_id = podman.image_id(BASE_REFERENCE)
    if image_id is None:
        raise ImageBuildError(f"{BASE_REFERENCE} is not in podman's storage after the import")
    return BaseImage(BASE_REFERENCE, tarball, identity, image_id, built,
                     time.monotonic() - started)
