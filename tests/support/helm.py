"""The chart through the control-plane binary's `helm` (Helm v3.21.4's own library).

No cluster needed: `helm template` renders client-side, as Helm does, with
values.schema.json validated by Helm itself.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from stackforge_operator.devcluster.binary import ensure_binary

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "stackforge-operator"
NAMESPACE = "stackforge-system"
RELEASE = "stackforge"


class HelmError(RuntimeError):
    """helm exited non-zero; the message is its stderr."""


def helm(*args: str, timeout: float = 120.0) -> str:
    """Run `controlplane helm ARGS...` and return stdout; HelmError with stderr on failure."""
    result = subprocess.run(
        [str(ensure_binary()), "helm", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    if result.returncode != 0:
        raise HelmError(result.stderr.strip() or result.stdout.strip())
    return result.stdout


def _set_args(values: Mapping[str, str]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def template_text(
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    values: Mapping[str, str] | None = None,
    value_files: Sequence[Path] = (),
    include_crds: bool = False,
) -> str:
    args = ["template", release, str(CHART), "-n", namespace, *_set_args(values or {})]
    for path in value_files:
        args += ["-f", str(path)]
    if include_crds:
        args.append("--include-crds")
    return helm(*args)


def template(**kwargs: Any) -> list[dict[str, Any]]:
    """The rendered objects (see :func:`template_text` for the arguments)."""
    return [d for d in yaml.safe_load_all(template_text(**kwargs)) if d]


def lint(*extra: str) -> str:
    return helm("lint", str(CHART), *extra)


def find(docs: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def only(docs: Sequence[dict[str, Any]], kind: str, name_prefix: str = "") -> dict[str, Any]:
    """The one ``kind`` rendered (whose name starts with ``name_prefix``)."""
    found = [d for d in find(docs, kind) if d["metadata"]["name"].startswith(name_prefix)]
    assert len(found) == 1, f"{kind} {name_prefix}: {len(found)} rendered"
    return found[0]
