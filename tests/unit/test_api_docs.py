"""docs/api.md: the BackupPolicy storage table lists every field the CRD has."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from stackforge_operator.crdgen import KINDS, openapi_schema

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
HEADING = "## BackupPolicy `spec.storage`"


def _schema_fields(node: dict[str, Any], prefix: str = "") -> set[str]:
    found = set()
    for name, child in (node.get("properties") or {}).items():
        found.add(prefix + name)
        found |= _schema_fields(child, f"{prefix}{name}.")
    return found


def _documented_fields() -> set[str]:
    text = API_DOC.read_text(encoding="utf-8")
    assert HEADING in text, f"docs/api.md lacks the section {HEADING!r}"
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Za-z.]+)` \|", section, flags=re.MULTILINE))


def test_storage_table_lists_every_field() -> None:
    kind = next(k for k in KINDS if k.kind == "BackupPolicy")
    storage = openapi_schema(kind)["properties"]["spec"]["properties"]["storage"]
    fields = _schema_fields(storage)
    assert {"endpointCA", "endpointCA.name", "endpointCA.key"} <= fields
    documented = _documented_fields()
    assert fields - documented == set(), "document these spec.storage fields in docs/api.md"
    assert documented - fields == set(), "docs/api.md documents spec.storage fields that are gone"
