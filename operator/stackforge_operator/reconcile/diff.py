"""Pure comparison of a desired child object with the live one.

Server-side apply is itself idempotent, but every apply is a write request.
To make a converged resync write nothing, a child is applied only when the
live object differs from what we want in a field we set. Fields we do not set
(server defaults, status, annotations added by Argo CD or people) are ignored.

That comparison alone cannot see a field we set before and no longer set (an
autoscaled app's ``replicas: 0`` of a suspend, left out on resume for the HPA
to own): nothing desired differs, so the apply that would drop the field
never comes. So each child carries a digest of what was last applied
(``stamped``): a desired object that changed in any way, a field left out
included, differs from the live one in that annotation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

# A digest of the desired object as last applied (``stamped``).
APPLIED_DIGEST_ANNOTATION = "stackforge.io/applied-digest"

# Metadata that the API server owns; desired objects never set these, and
# comparing them would always differ.
_SERVER_METADATA = frozenset(
    {"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink"}
)

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"m": Decimal("0.001"), "k": Decimal(10**3), "M": Decimal(10**6),
            "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15)}


def _as_quantity(value: str) -> Decimal | None:
    # The API server canonicalises quantities ("1024Mi" is stored as "1Gi",
    # "0.5" as "500m"); compare them by value, not by spelling.
    for suffixes in (_BINARY, _DECIMAL):
        for suffix, factor in suffixes.items():
            if value.endswith(suffix):
                try:
                    return Decimal(value[: -len(suffix)]) * factor
                except InvalidOperation:
                    return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None


def _empty(value: Any) -> bool:
    return value is None or value == {} or value == []


def _scalars_equal(desired: Any, live: Any) -> bool:
    if desired == live:
        return True
    if isinstance(desired, str | int) and isinstance(live, str | int):
        a, b = _as_quantity(str(desired)), _as_quantity(str(live))
        return a is not None and a == b
    return False


# Types that are neither mappings nor sequences here: checked first, because the
# abstract-class checks (Mapping, Sequence) cost several times more, and a
# converged resync compares every field of every child (most of its CPU).
_SCALARS = (str, bytes, int, float, bool, type(None))
_NOT_MAPPINGS = (*_SCALARS, list, tuple)
_NOT_SEQUENCES = (*_SCALARS, dict)


def _is_mapping(value: Any) -> bool:
    return type(value) is dict or (not isinstance(value, _NOT_MAPPINGS)
                                   and isinstance(value, Mapping))


def _is_sequence(value: Any) -> bool:
    return type(value) is list or (not isinstance(value, _NOT_SEQUENCES)
                                   and isinstance(value, Sequence))


def differences(desired: Any, live: Any, path: str = "") -> list[str]:
    """Paths where ``live`` does not hold what ``desired`` says (empty: converged)."""
    if _is_mapping(desired):
        if not _is_mapping(live):
            return [] if _empty(desired) and _empty(live) else [path or "."]
        found: list[str] = []
        for key, want in desired.items():
            if path == ".metadata" and key in _SERVER_METADATA:
                continue
            if key not in live:
                if not _empty(want):
                    found.append(f"{path}.{key}")
                continue
            have = live[key]
            if want is have or (type(want) is str and want == have):
                continue
            found.extend(differences(want, have, f"{path}.{key}"))
        return found
    if _is_sequence(desired):
        if not _is_sequence(live):
            return [] if _empty(desired) and _empty(live) else [path]
        if len(desired) != len(live):
            return [path]
        found = []
        for index, (want, have) in enumerate(zip(desired, live, strict=True)):
            if type(want) is str and want == have:
                continue
            found.extend(differences(want, have, f"{path}[{index}]"))
        return found
    return [] if _scalars_equal(desired, live) else [path or "."]


def needs_apply(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    return live is None or bool(differences(desired, live))


def stamped(desired: Mapping[str, Any]) -> dict[str, Any]:
    """``desired`` with its digest in ``APPLIED_DIGEST_ANNOTATION`` (of everything
    but that annotation), so that ``needs_apply`` sees a field it no longer sets."""
    meta = desired["metadata"]
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if k != APPLIED_DIGEST_ANNOTATION}
    unstamped = {**desired, "metadata": {**meta, "annotations": annotations}}
    if not annotations:
        unstamped["metadata"].pop("annotations")
    text = json.dumps(unstamped, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    return {**desired, "metadata": {**meta, "annotations": {
        **annotations, APPLIED_DIGEST_ANNOTATION: digest}}}
