"""Label and field selectors, evaluated the way the API server does (pure).

The watch caches answer a read in place of the API server only when they can
do so exactly: :func:`parse` understands the equality forms the operator
writes (``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``) and refuses anything else
(set-based ``in``/``notin``), so such a read goes to the API server instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Operator = Literal["=", "!=", "exists", "absent"]


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Operator
    value: str = ""

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "exists":
            return self.key in labels
        if self.operator == "absent":
            return self.key not in labels
        if self.operator == "=":
            return labels.get(self.key) == self.value
        # "!=" matches objects without the label, as the API server's does.
        return labels.get(self.key) != self.value


class UnsupportedSelectorError(ValueError):
    pass


def parse(selector: str) -> tuple[Requirement, ...]:
    """The requirements of a selector; empty selects everything."""
    found = []
    for term in (t.strip() for t in selector.split(",")):
        if not term:
            continue
        if " " in term or "(" in term:
            raise UnsupportedSelectorError(f"set-based selector term {term!r}")
        if "!=" in term:
            key, _, value = term.partition("!=")
            found.append(Requirement(key.strip(), "!=", value.strip()))
        elif "=" in term:
            key, _, value = term.partition("==") if "==" in term else term.partition("=")
            found.append(Requirement(key.strip(), "=", value.strip()))
        elif term.startswith("!"):
            found.append(Requirement(term[1:].strip(), "absent"))
        else:
            found.append(Requirement(term, "exists"))
    return tuple(found)


def matches(requirements: Sequence[Requirement], labels: Mapping[str, str] | None) -> bool:
    return all(r.matches(labels or {}) for r in requirements)


def implies(read: Sequence[Requirement], scope: Sequence[Requirement]) -> bool:
    """Whether every object ``read`` selects is also selected by ``scope``: a cache
    holding exactly ``scope`` can then answer ``read`` alone."""
    def covered(need: Requirement) -> bool:
        return any(
            have == need
            or (need.operator == "exists" and have.key == need.key and have.operator == "=")
            for have in read)

    return all(covered(need) for need in scope)


def field_equalities(selector: str) -> dict[str, str] | None:
    """``metadata.name``/``metadata.namespace`` equalities of a field selector, as
    {"name": ..., "namespace": ...}; None when it asks for anything else (the
    caller then asks the API server)."""
    found: dict[str, str] = {}
    for term in (t.strip() for t in selector.split(",")):
        if not term:
            continue
        field, equals, value = term.partition("==") if "==" in term else term.partition("=")
        field = field.strip()
        if not equals or field not in ("metadata.name", "metadata.namespace"):
            return None
        found[field.removeprefix("metadata.")] = value.strip()
    return found
