"""Built Go programs kept outside the checkout, by a hash of what they are built from.

A fresh clone has no ``tests/controlplane/bin``: with a warm Go build cache the
control plane still takes about half a minute to link and the node programs as
long again. Each program is kept under ``$STACKFORGE_BUILD_CACHE`` (by default
``$XDG_CACHE_HOME/stackforge/bin``, i.e. ``~/.cache/...``) in a directory named
by the hash of its inputs (sources, pinned versions, flags, the Go version), so
the next clone copies it instead; any change to an input is another key, and a
program is never taken from a cache entry built from other inputs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

CACHE_ENV = "STACKFORGE_BUILD_CACHE"


def cache_root() -> Path:
    if configured := os.environ.get(CACHE_ENV):
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "stackforge" / "bin"


def go_version(go: str) -> str:
    """The toolchain's own version (a new Go is a new key)."""
    result = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True,
                            check=False, env={**os.environ, "GOTOOLCHAIN": "local"})
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def key(parts: Iterable[str | bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        # Length-prefixed: ("ab", "c") and ("a", "bc") are different keys.
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()[:32]


def fetch(cache_key: str, name: str, destination: Path) -> bool:
    """Copy the cached program to ``destination``; False when there is none."""
    cached = cache_root() / cache_key / name
    if not cached.is_file():
        return False
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.partial")
    shutil.copy2(cached, partial)
    # Renamed last: an interrupted copy never looks like a program.
    partial.replace(destination)
    # Newer than its sources, or a freshness check by time would rebuild it.
    os.utime(destination)
    return True


def store(cache_key: str, name: str, built: Path) -> None:
    """Keep a copy of a program just built, in place of older builds of the same
    name (best effort: a full disk only costs a build next time)."""
    root = cache_root()
    directory = root / cache_key
    try:
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / f".{name}.partial"
        shutil.copy2(built, partial)
        partial.replace(directory / name)
        for other in root.iterdir():
            if other != directory and (other / name).is_file():
                (other / name).unlink()
                if not any(other.iterdir()):
                    other.rmdir()
    except OSError:
        pass
