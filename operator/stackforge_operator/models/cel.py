"""CEL validation rules declared once, enforced twice.

A :class:`Rule` carries the CEL expression the API server evaluates at
admission (emitted as ``x-kubernetes-validations``) *and* the Python predicate
pydantic evaluates when the operator parses an object.  Keeping both in one
value, next to the model, is what stops them drifting apart; a unit test
evaluates every CEL expression with cel-python against the same cases.

Two ways to attach rules:

* object rules: list them in a model's ``cel_rules`` class variable (see
  :class:`stackforge_operator.models.common.SpecModel`);
* field rules: put a :class:`Cel` marker inside ``Annotated[...]``.

Transition rules (those mentioning ``oldSelf``) cannot be checked by pydantic,
which never sees the previous object: their twin is ``check_update(old, new)``,
run by :func:`stackforge_operator.models.common.update_violations`.  They are
only allowed as object rules, where both twins see whole models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

# The API server's cause types for CEL failures; they pick the error's wording
# ("Invalid value", "Required value", "Forbidden", "Duplicate value").
Reason = Literal[
    "FieldValueInvalid", "FieldValueRequired", "FieldValueForbidden", "FieldValueDuplicate"
]

VALIDATIONS_KEY = "x-kubernetes-validations"


@dataclass(frozen=True)
class Rule:
    """One CEL rule and its Python twin.

    ``message`` is shown verbatim by the API server and raised verbatim by
    pydantic, so it must name the field it is about.
    """

    cel: str
    message: str
    # Python twin of ``cel``: receives the validated model (object rules) or
    # value (field rules) and returns True when the rule holds.
    check: Callable[[Any], bool] | None = None
    field_path: str | None = None
    reason: Reason | None = None
    # Python twin of a transition rule: (old, new) -> holds.
    check_update: Callable[[Any, Any], bool] | None = None

    def __post_init__(self) -> None:
        if self.is_transition:
            if self.check_update is None or self.check is not None:
                raise ValueError(f"transition rule {self.cel!r} needs check_update only")
        elif self.check is None or self.check_update is not None:
            raise ValueError(f"rule {self.cel!r} needs a Python twin in check")
        if "\n" in self.message:
            # The API server refuses CRDs whose messages contain line breaks.
            raise ValueError("CEL messages must be one line")

    @property
    def is_transition(self) -> bool:
        """Transition rules compare with the stored object and run only on update."""
        return "oldSelf" in self.cel

    def to_schema(self) -> dict[str, str]:
        """The ``x-kubernetes-validations`` entry for this rule."""
        out = {"rule": self.cel, "message": self.message}
        if self.field_path is not None:
            out["fieldPath"] = self.field_path
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def add_rules(schema: JsonSchemaValue, rules: tuple[Rule, ...] | list[Rule]) -> None:
    """Append rules to a JSON schema node's ``x-kubernetes-validations``."""
    if rules:
        schema.setdefault(VALIDATIONS_KEY, []).extend(r.to_schema() for r in rules)


def failed_messages(rules: tuple[Rule, ...] | list[Rule], value: Any) -> list[str]:
    """Messages of the non-transition rules that ``value`` breaks."""
    return [r.message for r in rules if r.check is not None and not r.check(value)]


@dataclass(frozen=True)
class Cel:
    """``Annotated`` marker attaching field-level rules to a type.

    ``Annotated[str, Cel(Rule(...))]`` validates the value in pydantic (after
    the type's own validation) and emits the rule in the JSON schema.
    """

    rules: tuple[Rule, ...] = field(default_factory=tuple)

    def __init__(self, *rules: Rule) -> None:
        if any(r.is_transition for r in rules):
            raise ValueError("transition rules belong on the enclosing model's cel_rules")
        object.__setattr__(self, "rules", rules)

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        inner = handler(source)

        def validate(value: Any) -> Any:
            failed = failed_messages(self.rules, value)
            if failed:
                raise PydanticCustomError("cel_rule", "; ".join(failed))
            return value

        return core_schema.no_info_after_validator_function(validate, inner)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)
        add_rules(out, self.rules)
        return out


SERVER_DEFAULT_KEY = "x-stackforge-server-default"


@dataclass(frozen=True)
class ServerDefault:
    """``Annotated`` marker: the API server should fill in this default.

    crdgen drops every pydantic ``default`` except the ones marked here, so a
    default lands in the CRD only where a server-side default is really meant
    (for example pinning PostgreSQL's major version at creation so a later
    operator release cannot silently upgrade it).
    """

    value: Any

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)
        out[SERVER_DEFAULT_KEY] = self.value
        return out


# A label value's limit: objects named after a BackupPolicy or a DRDrill carry
# its name in a label (their Jobs, a drill's sandbox namespace).
MAX_LABEL_VALUE = 63


def name_in_labels_rule() -> Rule:
    """Root-level rule: the name is a label value of what the operator makes for it;
    a longer one got every sandbox (or Job) refused, each run ending in Timeout."""
    return Rule(
        cel=f"size(self.metadata.name) <= {MAX_LABEL_VALUE}",
        message=(f"metadata.name must be at most {MAX_LABEL_VALUE} characters (it is a "
                 "label value of the objects made for it)"),
        # No fieldPath: the CRD schema does not declare metadata's properties.
        check=lambda obj: len(obj["metadata"]["name"]) <= MAX_LABEL_VALUE,
    )
