"""The operator's malloc arena limit."""

from __future__ import annotations

import subprocess
import sys

from stackforge_operator import malloc_arenas


def test_the_environment_decides_when_it_names_a_limit() -> None:
    assert malloc_arenas.limit({"MALLOC_ARENA_MAX": "4"}) is False


def test_glibc_takes_the_limit() -> None:
    # In a process of its own: the limit stays for the life of a process.
    code = ("from stackforge_operator import malloc_arenas; "
            "print(malloc_arenas.limit({}))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True)
    # This machine's Python runs on glibc (Debian); the operator image's too.
    assert found.stdout.strip() == "True"
