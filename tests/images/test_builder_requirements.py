"""images/operator/builder_requirements.py: what the builder stage installs before the sources."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "images" / "operator" / "builder_requirements.py"


def test_prints_build_and_runtime_requirements_of_the_project() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), str(ROOT / "pyproject.toml")],
                         capture_output=True, text=True, check=True)  # fmt: skip
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    expected = [*pyproject["build-system"]["requires"], *pyproject["project"]["dependencies"]]
    assert out.stdout.splitlines() == expected
    # Runtime only: no test or dev extras reach the image.
    assert not any(r.startswith(("pytest", "mypy", "ruff", "moto")) for r in expected)


def test_without_dependencies(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\nversion = "1"\n')
    out = subprocess.run([sys.executable, str(SCRIPT), str(pyproject)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == ""


def test_usage() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                         check=False)  # fmt: skip
    assert out.returncode != 0
    assert "usage" in out.stderr
