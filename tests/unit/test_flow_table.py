"""docs/network-flows.md is the table the flow lists render today."""

from __future__ import annotations

from pathlib import Path

from stackforge_operator import flow_table

ROOT = Path(__file__).resolve().parents[2]


def test_the_document_is_what_the_generator_writes_now() -> None:
    generated = flow_table.from_examples(ROOT / "examples" / "tenant-acme.yaml",
                                         ROOT / "examples" / "backuppolicy-acme.yaml")
    written = (ROOT / "docs" / "network-flows.md").read_text(encoding="utf-8")
    assert written == generated, (
        "docs/network-flows.md is out of date: python -m stackforge_operator.flow_table "
        "examples/tenant-acme.yaml examples/backuppolicy-acme.yaml > docs/network-flows.md")


def test_the_flows_issue_15_found_missing_have_rows() -> None:
    written = (ROOT / "docs" / "network-flows.md").read_text(encoding="utf-8")
    rows = [line for line in written.splitlines()
            if line.startswith("| ") and not line.startswith("| from")]
    for needed in ("Consul's health check of the app", "cert-manager's HTTP-01 challenge",
                   "spec.components.apps[api].egress[0]", "backup runners of this namespace",
                   "never the tenant's pods"):
        assert any(needed in row for row in rows), needed
