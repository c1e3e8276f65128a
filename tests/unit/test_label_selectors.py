"""Selectors as the API server evaluates them, and which reads a scoped cache may answer."""

from __future__ import annotations

import pytest

from stackforge_operator.label_selectors import (
    Requirement,
    UnsupportedSelectorError,
    field_equalities,
    implies,
    matches,
    parse,
)


def test_the_equality_forms_parse() -> None:
    assert parse("a=1, b==2,c!=3,d,!e") == (
        Requirement("a", "=", "1"), Requirement("b", "=", "2"), Requirement("c", "!=", "3"),
        Requirement("d", "exists"), Requirement("e", "absent"))
    assert parse("") == ()


@pytest.mark.parametrize("selector", ["env in (a,b)", "env notin (a)"])
def test_set_based_selectors_are_refused(selector: str) -> None:
    with pytest.raises(UnsupportedSelectorError):
        parse(selector)


@pytest.mark.parametrize(("selector", "labels", "expected"), [
    ("a=1", {"a": "1"}, True),
    ("a=1", {"a": "2"}, False),
    ("a=1", {}, False),
    ("a!=1", {}, True),  # as the API server: absent is "not 1"
    ("a!=1", {"a": "1"}, False),
    ("a", {"a": ""}, True),
    ("!a", {"a": ""}, False),
    ("a=1,b", {"a": "1"}, False),
    ("", {}, True),
])
def test_matching(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert matches(parse(selector), labels) is expected


@pytest.mark.parametrize(("read", "scope", "expected"), [
    ("tenant=shop,managed=op", "managed=op,tenant", True),
    ("tenant=shop", "managed=op,tenant", False),      # might select objects outside
    ("tenant", "tenant", True),
    ("tenant!=shop", "tenant", False),
    ("anything=1", "", True),                          # a store of every object
    ("", "tenant", False),
])
def test_a_read_is_answered_only_inside_the_scope(read: str, scope: str,
                                                  expected: bool) -> None:
    assert implies(parse(read), parse(scope)) is expected


def test_field_selectors_of_name_and_namespace_only() -> None:
    assert field_equalities("metadata.name=a,metadata.namespace==b") == {
        "name": "a", "namespace": "b"}
    assert field_equalities("") == {}
    assert field_equalities("metadata.name!=a") is None
    assert field_equalities("status.phase=Running") is None
