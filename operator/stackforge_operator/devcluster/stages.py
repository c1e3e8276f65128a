"""kwok Stage objects: kwok's own defaults, adjusted for StackForge's tests.

kwok's default ``pod-complete`` stage makes every Job pod succeed without
running anything. Pods whose work must really happen (backup and drill
runners) carry the ``stackforge.io/runner`` label; they are kept out of that
stage so a harness runs their command and reports the outcome, and a backup
can never look successful without having been made.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

# Pods with this label are never completed by kwok.
RUNNER_LABEL = "stackforge.io/runner"


def parse_stages(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def exclude_runner_pods(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the stages with runner pods excluded from automatic completion."""
    adjusted = copy.deepcopy(stages)
    for stage in adjusted:
        if stage.get("metadata", {}).get("name") != "pod-complete":
            continue
        expressions = stage["spec"]["selector"].setdefault("matchExpressions", [])
        expressions.append(
            {"key": f'.metadata.labels.["{RUNNER_LABEL}"]', "operator": "DoesNotExist"}
        )
    return adjusted


def load_volume_stages(kwok_source: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """kwok's volume stages (PVC provisioning and binding) and their StorageClass.

    kwok ships them as YAML beside its source rather than as embedded strings,
    so they are read from the kwok module the control plane was built from.
    """
    directory = kwok_source / "kustomize" / "stage" / "volume" / "fast"
    stage_docs: list[dict[str, Any]] = []
    storage_class: dict[str, Any] = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in parse_stages(path.read_text()):
            if doc.get("kind") == "Stage":
                stage_docs.append(doc)
            elif doc.get("kind") == "StorageClass":
                storage_class = doc
    if not stage_docs or not storage_class:
        raise FileNotFoundError(f"no kwok volume stages or StorageClass under {directory}")
    return stage_docs, storage_class


def render_kwok_config(stages: list[dict[str, Any]]) -> str:
    """kwok's --config file: the Stage documents it loads.

    kwok's own options stay at their defaults and are set by flags; a partial
    KwokConfiguration document here would replace the defaults with zeros.
    """
    return yaml.safe_dump_all(stages, sort_keys=False)
