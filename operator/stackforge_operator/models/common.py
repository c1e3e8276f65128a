"""Building blocks shared by the three kinds: base models, formats, references, conditions."""

from __future__ import annotations

import enum
import re
from collections import Counter
from collections.abc import Callable, Hashable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StrictInt,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from stackforge_operator.models.cel import Cel, Rule, add_rules, failed_messages

# --------------------------------------------------------------------------- bases


class SpecModel(BaseModel):
    """Base of every spec model: camelCase JSON names, unknown fields refused.

    Subclasses list their cross-field rules in ``cel_rules``; each rule is
    emitted as CEL on the model's schema and checked here by its Python twin.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        # Enums stay enums in Python but dump as their JSON string.
        use_enum_values=False,
    )

    cel_rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _cel_twins(self) -> Self:
        failed = failed_messages(type(self).cel_rules, self)
        if failed:
            raise ValueError("; ".join(failed))
        return self

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        add_rules(handler.resolve_ref_schema(schema), cls.cel_rules)
        return schema


class StatusModel(BaseModel):
    """Base of status models: written by the operator, read back leniently.

    Unknown fields are ignored rather than refused so that a status written
    by a newer operator release does not break an older one during a rollout.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def field_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as the API server writes it: ``spec.apps[0].port``."""
    out = ""
    for step in loc:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


def update_violations(old: BaseModel, new: BaseModel) -> list[str]:
    """Messages of the transition rules (immutability etc.) that ``old -> new`` breaks.

    Walks both models in step, as the API server correlates old and new
    objects through nested properties (not through lists, where all our
    transition rules are absent).
    """
    out: list[str] = []
    rules: tuple[Rule, ...] = getattr(type(new), "cel_rules", ())
    for rule in rules:
        if rule.check_update is not None and not rule.check_update(old, new):
            out.append(rule.message)
    for name in type(new).model_fields:
        o, n = getattr(old, name, None), getattr(new, name, None)
        if isinstance(o, BaseModel) and isinstance(n, BaseModel) and type(o) is type(n):
            out.extend(update_violations(o, n))
    return out


# --------------------------------------------------------------------------- formats
# Patterns go into the CRD as OpenAPI ``pattern`` (checked by the API server
# with Go's RE2) and into pydantic (Rust regex): keep them in the common
# subset (no look-around, no back-references).

DNS_LABEL_RE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# An object name: DNS subdomain (dots allowed, no TLD requirement).
DNS_SUBDOMAIN_RE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A public host name: at least two labels, alphabetic top-level label.
DOMAIN_RE = r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
TIME_ZONE_RE = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$"
HTTP_URL_RE = r"^https?://[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[^\s]*)?$"
# Kubernetes' resource.Quantity grammar, without a sign: requests are never negative.
QUANTITY_RE = r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]+))?$"
# Volume sizes: whole-ish numbers with a byte unit; "20Gi", "500M", "0.5Gi". Not zero:
# a claim of size 0 is refused, and so the StatefulSet that would make it. (No
# look-ahead: the API server's patterns are RE2.)
STORAGE_RE = (r"^([0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)"
              r"(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
IMAGE_RE = (
    r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)
EMAIL_RE = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
SECRET_KEY_RE = r"^[-._a-zA-Z0-9]+$"  # noqa: S105 - a pattern for key names


def _cron_field(value: str, wildcard_q: bool = False) -> str:
    # One cron field: "*", "v", "a-b", each optionally "/step", comma lists.
    star = "[*?]" if wildcard_q else "[*]"
    item = f"({star}|{value}(-{value})?)(/[1-9][0-9]?)?"
    return f"{item}(,{item})*"


# A cron field's names, in order: months from 1, days from Sunday 0.
CRON_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
CRON_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_MONTHS = "|".join(CRON_MONTHS)
_DAYS = "|".join(CRON_DAYS)
# The grammar the CronJob controller (robfig/cron, standard parser) accepts,
# minus the "TZ=" prefix which the CronJob API forbids in favour of timeZone.
# Written without backslashes or quotes so it can sit inside a CEL string.
CRON_RE = (
    "^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|"
    + " +".join(
        [
            _cron_field("([0-5]?[0-9])"),
            _cron_field("([01]?[0-9]|2[0-3])"),
            _cron_field("(0?[1-9]|[12][0-9]|3[01])", wildcard_q=True),
            _cron_field(f"(0?[1-9]|1[0-2]|(?i:{_MONTHS}))"),
            # 0-6: robfig/cron refuses 7 for Sunday, so the API server refused
            # the CronJob of a schedule this grammar let through.
            _cron_field(f"([0-6]|(?i:{_DAYS}))", wildcard_q=True),
        ]
    )
    + ")$"
)
_CRON = re.compile(CRON_RE)
assert "\\" not in CRON_RE and "'" not in CRON_RE

# A backup run's id, as the runner names it (backup/runid.py): its start in UTC
# and a suffix, e.g. 20261127T020000Z-3fa9c1.
RUN_ID_PATTERN = r"^([0-9]{8}T[0-9]{6}Z)-([a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?)$"

DNSLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_RE)]
RunId = Annotated[str, Field(min_length=18, max_length=56, pattern=RUN_ID_PATTERN)]
Domain = Annotated[str, Field(min_length=4, max_length=253, pattern=DOMAIN_RE)]
TimeZone = Annotated[str, Field(min_length=1, max_length=64, pattern=TIME_ZONE_RE)]
HttpUrl = Annotated[str, Field(min_length=8, max_length=2048, pattern=HTTP_URL_RE)]
StorageSize = Annotated[str, Field(min_length=1, max_length=32, pattern=STORAGE_RE)]
# int-or-string, like resource.Quantity: "500m", "1Gi" or 2.
Quantity = (
    Annotated[StrictInt, Field(ge=0)]
    | Annotated[str, Field(min_length=1, max_length=32, pattern=QUANTITY_RE)]
)
Cron = Annotated[
    str,
    Field(min_length=1, max_length=100),
    Cel(
        Rule(
            cel=f"self.matches('{CRON_RE}')",
            message=(
                "schedule must be a cron expression of 5 fields (minute hour day-of-month "
                "month day-of-week, e.g. '0 2 * * *') or a macro such as @daily"
            ),
            check=lambda v: _CRON.fullmatch(v) is not None,
        )
    ),
]


# --------------------------------------------------------------------------- quantities

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}
_QUANTITY = re.compile(r"^([0-9]*\.?[0-9]*)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]+))?$")


def parse_quantity(value: int | str) -> Decimal:
    """A Kubernetes quantity as a number (bytes, cores): ``"1Gi" -> 1073741824``."""
    if isinstance(value, int):
        return Decimal(value)
    m = _QUANTITY.fullmatch(value)
    if m is None or m.group(1) in ("", "."):
        raise ValueError(f"not a quantity: {value!r}")
    number, suffix = Decimal(m.group(1)), m.group(2) or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix[:1] in ("e", "E"):
        return number * Decimal(10) ** int(suffix[1:])
    return number * _DECIMAL[suffix]


# --------------------------------------------------------------------------- references


class LocalObjectRef(SpecModel):
    """A reference to an object by name."""

    name: DNSLabel = Field(description="Name of the referenced object.")


class SecretKeyRef(SpecModel):
    """A key of a Secret in the referring object's namespace.

    Cross-namespace references are deliberately impossible: the operator reads
    Secrets with cluster-wide rights, and letting a user name any namespace
    would let them make it disclose Secrets they cannot read themselves.
    """

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_RE)] = Field(
        description="Name of the Secret."
    )
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=SECRET_KEY_RE)] = Field(
        description="Key within the Secret's data."
    )


# --------------------------------------------------------------------------- resources


class ResourceList(SpecModel):
    """CPU and memory amounts."""

    cpu: Quantity | None = Field(None, description="CPU, in cores or millicores (e.g. 500m).")
    memory: Quantity | None = Field(None, description="Memory, in bytes or with a unit (512Mi).")


def _requests_within_limits(r: ResourceRequirements) -> bool:
    if r.requests is None or r.limits is None:
        return True
    return all(
        req is None or lim is None or parse_quantity(req) <= parse_quantity(lim)
        for req, lim in (
            (r.requests.cpu, r.limits.cpu),
            (r.requests.memory, r.limits.memory),
        )
    )


def _within(resource: str) -> str:
    # int-or-string values reach CEL as int or string; quantity() wants a string.
    req, lim = f"self.requests.{resource}", f"self.limits.{resource}"
    return (
        f"!has(self.requests) || !has(self.limits) || !has({req}) || !has({lim}) || "
        f"quantity(string({req})).compareTo(quantity(string({lim}))) <= 0"
    )


class ResourceRequirements(SpecModel):
    """Compute resources of a workload; unset values come from the tier."""

    cel_rules = (
        Rule(
            cel=f"({_within('cpu')}) && ({_within('memory')})",
            message="resources.requests must not exceed resources.limits (cpu and memory)",
            field_path=".requests",
            check=_requests_within_limits,
        ),
    )

    requests: ResourceList | None = Field(None, description="Guaranteed amounts.")
    limits: ResourceList | None = Field(None, description="Upper bounds.")


# --------------------------------------------------------------------------- conditions


class ConditionStatus(enum.StrEnum):
    """The status of a condition."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(StatusModel):
    """One aspect of the object's state, shaped like metav1.Condition."""

    type: Annotated[
        str,
        Field(
            max_length=316,
            pattern=(
                r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
            ),
        ),
    ] = Field(description="Type of condition in CamelCase, e.g. Ready.")
    status: ConditionStatus = Field(description="Status of the condition: True, False or Unknown.")
    reason: Annotated[
        str,
        Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"),
    ] = Field(description="Machine-readable CamelCase reason for the last transition.")
    message: Annotated[str, Field(max_length=32768)] = Field(
        "", description="Human-readable details of the last transition."
    )
    last_transition_time: datetime = Field(
        description="When the condition last changed status (not merely its reason or message)."
    )
    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation the condition was computed from."
    )


Conditions = Annotated[list[Condition], Field(max_length=32)]


def condition_list_field() -> Any:
    """The ``conditions`` field every status has (list map keyed by type)."""
    return Field(
        default_factory=list,
        description="Current state of the object; Ready is the roll-up of the others.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )


def list_map(*keys: str) -> dict[str, Any]:
    """Schema extras declaring a list as a map keyed by ``keys``.

    The API server then refuses duplicate keys ("Duplicate value") and
    server-side apply merges entries by key instead of replacing the list.
    """
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


def unique(key: str | None = None) -> Callable[[list[Any]], list[Any]]:
    """Pydantic twin of a list map (by ``key``) or set (``key=None``): refuse duplicates."""

    def check(items: list[Any]) -> list[Any]:
        keys: list[Hashable] = [i if key is None else getattr(i, key) for i in items]
        dups = [str(k) for k, n in Counter(keys).items() if n > 1]
        if dups:
            raise ValueError(f"duplicate {key or 'entry'}: {', '.join(dups)}")
        return items

    return check
