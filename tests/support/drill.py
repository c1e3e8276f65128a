"""Running ``stackforge-operator drill run`` as a drill Job's pod would, for tests and the bench."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tests.support.s3_server import REGION


def drill_argv(
    *,
    tenant: str,
    bucket: str,
    endpoint: str,
    region: str = REGION,
    prefix: str = "stackforge",
    extra: Sequence[str] = (),
) -> list[str]:
    """The drill runner's command line; secrets and the database stay in the environment."""
    return [
        sys.executable, "-m", "stackforge_operator.drill.cli",
        "--tenant", tenant, "--bucket", bucket, "--prefix", prefix,
        "--endpoint", endpoint, "--region", region, "--force-path-style",
        *extra,
    ]
