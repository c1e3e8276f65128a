"""What machine a benchmark ran on, printed with its table (docs/benchmarks.md records it)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine_facts() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, "
            f"Linux {platform.release()}, Python {platform.python_version()}")
