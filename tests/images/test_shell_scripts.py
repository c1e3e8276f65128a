"""Every shell script that goes into an image passes shellcheck, and so does `.ci/run`.

shellcheck is required, not optional: a script that only runs inside a
container is exactly the code no other test reads line by line. `.ci/run`
installs it (Debian package ``shellcheck``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
SCRIPTS = sorted(IMAGES.rglob("*.sh"))


def test_there_are_scripts_to_check() -> None:
    assert SCRIPTS, f"no *.sh under {IMAGES}"


def _shellcheck(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is required: apt-get install shellcheck")
    result = subprocess.run(
        [shellcheck, "--severity=style", "--external-sources", str(script)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(IMAGES)))
def test_shellcheck_clean(script: Path) -> None:
    _shellcheck(script)


def test_the_ci_script_is_shellcheck_clean() -> None:
    # It runs first on every new machine: a slip there costs a whole run.
    _shellcheck(ROOT / ".ci" / "run")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(IMAGES)))
def test_executable_with_a_posix_shebang(script: Path) -> None:
    # COPY keeps the mode: a script the image runs directly must be executable
    # in the checkout, and is written for POSIX sh (dash in the images), not bash.
    assert script.stat().st_mode & 0o111, f"{script} is not executable"
    assert script.read_text().startswith("#!/bin/sh\n")
