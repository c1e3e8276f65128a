"""The Prometheus Operator's own CRD definitions, for tests that need its kinds.

Taken from the Prometheus Operator's Go module (the same files its releases
install), fetched through the Go module proxy like the control plane's
sources, so the API server validates our PrometheusRules and ServiceMonitors
against the real schemas. No Prometheus Operator controller runs: the tests
check the objects the operator renders, not what Prometheus does with them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

MODULE = "github.com/prometheus-operator/prometheus-operator"
VERSION = "v0.85.0"
CRD_DIRECTORY = "example/prometheus-operator-crd"
CRD_FILES = (
    "monitoring.coreos.com_prometheusrules.yaml",
    "monitoring.coreos.com_servicemonitors.yaml",
)
CRD_NAMES = ("prometheusrules.monitoring.coreos.com", "servicemonitors.monitoring.coreos.com")


def crd_paths() -> list[Path]:
    """Download (or find in Go's module cache) the pinned release; return its CRD files."""
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("the Go toolchain is needed to fetch the Prometheus Operator CRDs")
    # Outside any module, so no go.mod is read or changed.
    with tempfile.TemporaryDirectory() as scratch:
        result = subprocess.run(
            [go, "mod", "download", "-json", f"{MODULE}@{VERSION}"],
            cwd=scratch, capture_output=True, text=True, timeout=600, check=False,
            env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"},
        )
    if result.returncode != 0:
        raise RuntimeError(f"go mod download {MODULE}@{VERSION} failed:\n"
                           f"{result.stdout}\n{result.stderr}")
    directory = Path(json.loads(result.stdout)["Dir"]) / CRD_DIRECTORY
    paths = [directory / name for name in CRD_FILES]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise RuntimeError(f"not in {MODULE}@{VERSION}: {missing}")
    return paths
