"""What the images' programs (images/*/*.sh) read from their environment, so a
builder's test can check that the pod gives each program what it needs."""

from __future__ import annotations

import re
from pathlib import Path

IMAGES = Path(__file__).resolve().parents[3] / "images"

_REQUIRED = re.compile(r"\$\{([A-Z][A-Z0-9_]*):\?")
_READ = re.compile(r"\$\{?([A-Z][A-Z0-9_]*)")


def script_required(path: Path) -> set[str]:
    """Variables the script refuses to run without (``${NAME:?message}``)."""
    return set(_REQUIRED.findall(path.read_text()))


def script_variables(path: Path) -> set[str]:
    """Every upper-case variable the script reads."""
    return set(_READ.findall(path.read_text()))
