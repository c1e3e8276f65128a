"""Evaluate a CRD schema's CEL rules offline, the way the API server walks them.

cel-python stands in for cel-go.  Only what our rules use is provided beyond
standard CEL: Kubernetes' escaping of reserved property names
(``namespace`` -> ``__namespace__``) and the quantity library
(``quantity(s).compareTo(q)``).  Transition rules see ``oldSelf`` where the
old object has the same node (list items are not correlated, and none of our
transition rules lives under a list).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from stackforge_operator.models.common import parse_quantity

# CEL keywords Kubernetes escapes as __word__ when they name a property.
RESERVED = frozenset(
    {
        "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for",
        "function", "if", "import", "let", "loop", "package", "namespace", "return", "var",
        "void", "while",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Violation:
    """A rule that did not hold (or failed to evaluate) at ``path``."""

    path: str
    rule: str
    message: str


def _escape(value: Any) -> Any:
    if isinstance(value, dict):
        return {(f"__{k}__" if k in RESERVED else k): _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    return value


def _quantity(value: celtypes.StringType) -> celtypes.DoubleType:
    return celtypes.DoubleType(float(parse_quantity(str(value))))


def _compare_to(a: celtypes.DoubleType, b: celtypes.DoubleType) -> celtypes.IntType:
    return celtypes.IntType((a > b) - (a < b))


_ENV = celpy.Environment()


@cache
def _program(rule: str) -> celpy.Runner:
    return _ENV.program(
        _ENV.compile(rule), functions={"quantity": _quantity, "compareTo": _compare_to}
    )


def compile_rule(rule: str) -> None:
    """Raise if ``rule`` does not parse."""
    _program(rule)


def _holds(rule: str, value: Any, old: Any) -> bool:
    activation: dict[str, Any] = {"self": json_to_cel(_escape(value))}
    if old is not None:
        activation["oldSelf"] = json_to_cel(_escape(old))
    try:
        result = _program(rule).evaluate(activation)
    except CELEvalError:
        return False
    return isinstance(result, celtypes.BoolType) and bool(result)


def violations(
    schema: dict[str, Any], value: Any, old: Any = None, path: str = ""
) -> list[Violation]:
    """Every CEL rule of ``schema`` (recursively) that ``value`` breaks."""
    out: list[Violation] = []
    for rule in schema.get("x-kubernetes-validations", []):
        transition = "oldSelf" in rule["rule"]
        if transition and old is None:
            continue
        if not _holds(rule["rule"], value, old if transition else None):
            out.append(Violation(path + rule.get("fieldPath", ""), rule["rule"], rule["message"]))
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                old_sub = old.get(name) if isinstance(old, dict) else None
                out += violations(sub, value[name], old_sub, f"{path}.{name}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name, item in value.items():
                out += violations(extra, item, None, f"{path}.{name}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            out += violations(schema["items"], item, None, f"{path}[{i}]")
    return out
