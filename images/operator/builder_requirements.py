"""Print the requirements the image's builder stage installs before the sources arrive.

The build system's requirements and the project's runtime dependencies, one
per line, from pyproject.toml (the path given as the only argument). They get
a layer of their own, so a change to the operator's sources rebuilds only the
layer that installs the package itself (offline, without build isolation).
Runs under the image's Python 3.11: standard library only.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path) -> list[str]:
    with pyproject.open("rb") as data:
        project = tomllib.load(data)
    build = project.get("build-system", {}).get("requires", [])
    runtime = project["project"].get("dependencies", [])
    return [str(r) for r in [*build, *runtime]]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} PYPROJECT")
    print("\n".join(requirements(Path(sys.argv[1]))))
