"""Local names of the images built here (validated by the Docker reference grammar)."""

from __future__ import annotations

import pytest

from stackforge_operator.devcluster.image_reference import LOCAL_REGISTRY, local_reference

D = LOCAL_REGISTRY
DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("short", "qualified"),
    [
        ("stackforge/postgres:15", f"{D}/stackforge/postgres:15"),
        ("stackforge/stackforge-operator:0.1.0", f"{D}/stackforge/stackforge-operator:0.1.0"),
        ("redis:7.2", f"{D}/redis:7.2"),
        ("redis", f"{D}/redis:latest"),
        (f"redis@{DIGEST}", f"{D}/redis@{DIGEST}"),
        (f"redis:7@{DIGEST}", f"{D}/redis:7@{DIGEST}"),
        # A first component with a dot or a port, or "localhost", is a host: kept as is.
        ("mirror.example:5000/team/app:1", "mirror.example:5000/team/app:1"),
        ("mirror.example/app", "mirror.example/app:latest"),
        ("localhost/app:dev", "localhost/app:dev"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        # Already qualified: unchanged.
        (f"{D}/stackforge/postgres:15", f"{D}/stackforge/postgres:15"),
        ("a/b/c:1", f"{D}/a/b/c:1"),
    ],
)
def test_local_reference(short: str, qualified: str) -> None:
    assert local_reference(short) == qualified
    # Idempotent: the archive's name is what pods ask for.
    assert local_reference(qualified) == qualified


@pytest.mark.parametrize(
    "bad", ["Stackforge/postgres:15", "stackforge/postgres:", "postgres@sha256:xyz", "a//b", ""]
)
def test_invalid_references_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        local_reference(bad)
