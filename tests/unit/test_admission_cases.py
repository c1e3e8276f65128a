"""The admission table, checked offline against the models and the CEL rules.

The cluster test applies the same table to a real API server; these checks
keep the table honest without one, and prove the pydantic twins and the CEL
rules agree on every case.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from stackforge_operator.crdgen import KINDS, Kind, openapi_schema
from stackforge_operator.models.common import update_violations
from tests.cluster.admission_cases import (
    ACCEPTED_UPDATES,
    CASES,
    UPDATE_CASES,
    Case,
    UpdateCase,
    example,
)
from tests.unit import celeval

BY_KIND: dict[str, Kind] = {k.kind: k for k in KINDS}
SCHEMAS: dict[str, dict[str, Any]] = {k.kind: openapi_schema(k) for k in KINDS}


def _cel_messages(kind: str) -> set[str]:
    out = set()
    stack = [SCHEMAS[kind]]
    while stack:
        node = stack.pop()
        out |= {v["message"] for v in node.get("x-kubernetes-validations", [])}
        stack += node.get("properties", {}).values()
        if isinstance(node.get("items"), dict):
            stack.append(node["items"])
    return out


_FIELD_PATH = re.compile(r"^(spec|metadata)(\.[A-Za-z0-9]+|\[\d+\])*$")


def _is_cel_case(kind: str, expect: str) -> bool:
    """CEL cases expect a rule's message; schema cases expect a bare field path."""
    if _FIELD_PATH.match(expect):
        return False
    assert any(expect in m for m in _cel_messages(kind)), f"no rule says {expect!r}"
    return True


def _mentions(text: str, expect: str) -> bool:
    # The API server names a duplicate list entry by index (apps[1]); pydantic
    # names the list.
    return expect in text or re.sub(r"\[\d+\]$", "", expect) in text


def test_table_is_big_and_distinct() -> None:
    assert len(CASES) >= 45
    assert {c.kind for c in CASES} == set(BY_KIND)
    keys = [(c.kind, c.manifest["metadata"]["name"]) for c in CASES]
    assert len(keys) == len(set(keys)), "every manifest needs its own name"
    assert len({(c.kind, c.id) for c in CASES}) == len(CASES)
    assert len(UPDATE_CASES) >= 5


@pytest.mark.parametrize("kind", list(BY_KIND))
def test_examples_pass_models_and_cel(kind: str) -> None:
    obj = example(kind)
    assert BY_KIND[kind].violations(obj) == []
    assert celeval.violations(SCHEMAS[kind], obj) == []


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.kind}-{c.id}")
def test_models_refuse_case_naming_the_field(case: Case) -> None:
    problems = BY_KIND[case.kind].violations(case.manifest)
    assert problems, "the models accept what the API server must refuse"
    assert _mentions("\n".join(problems), case.expect), problems


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if _is_cel_case(c.kind, c.expect)],
    ids=lambda c: f"{c.kind}-{c.id}",
)
def test_cel_refuses_case(case: Case) -> None:
    found = celeval.violations(SCHEMAS[case.kind], case.manifest)
    assert any(case.expect in v.message for v in found), found


def _spec(kind: str, obj: dict[str, Any]) -> Any:
    return BY_KIND[kind].spec.model_validate(obj["spec"])


@pytest.mark.parametrize("case", UPDATE_CASES, ids=lambda c: f"{c.kind}-{c.id}")
def test_update_refused_by_twin_and_cel(case: UpdateCase) -> None:
    assert BY_KIND[case.kind].violations(case.original) == []
    assert BY_KIND[case.kind].violations(case.modified) == [], "only the change is wrong"
    twin = update_violations(_spec(case.kind, case.original), _spec(case.kind, case.modified))
    assert any(case.expect in m for m in twin), twin
    found = celeval.violations(SCHEMAS[case.kind], case.modified, case.original)
    assert any(case.expect in v.message for v in found), found


@pytest.mark.parametrize("case", ACCEPTED_UPDATES, ids=lambda c: f"{c.kind}-{c.id}")
def test_legitimate_update_allowed(case: UpdateCase) -> None:
    assert BY_KIND[case.kind].violations(case.modified) == []
    assert update_violations(_spec(case.kind, case.original), _spec(case.kind, case.modified)) == []
    assert celeval.violations(SCHEMAS[case.kind], case.modified, case.original) == []
