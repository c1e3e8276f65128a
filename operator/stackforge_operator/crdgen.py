"""Models -> structural OpenAPI v3 schemas -> CustomResourceDefinitions.

pydantic's JSON Schema is not a Kubernetes structural schema; :func:`structural`
rewrites it (DESIGN.md section 5):

=============================================  ==========================================
pydantic emits                                 we emit
=============================================  ==========================================
``$defs`` / ``$ref`` / single ``allOf``        the schema inlined (recursion is refused)
``anyOf [X, {type: null}]`` (Optional)         X, not required, *without* ``nullable``
``additionalProperties: false``                dropped (unknown fields: pruned, or refused
                                               under ``fieldValidation=Strict``)
``{}`` / free-form object                      ``x-kubernetes-preserve-unknown-fields``
``anyOf [integer, string]``                    ``x-kubernetes-int-or-string`` + both
                                               branches' constraints
``exclusiveMinimum: N``                        ``minimum: N, exclusiveMinimum: true``
``uniqueItems`` (sets)                         ``x-kubernetes-list-type: set``
``const``                                      ``enum: [value]``
``title``, ``examples``                        dropped
``default``                                    dropped unless marked ``ServerDefault``
=============================================  ==========================================

Why Optional is not ``nullable: true``: the API server *prunes* an explicit
``null`` of a non-nullable field before defaulting and validation, so
``field: null`` means exactly what pydantic's ``None`` means (unset) and CEL's
``has()`` stays truthful.  With ``nullable`` the null would be stored and every
CEL rule touching the field would need a null guard.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ValidationError

from stackforge_operator import API_GROUP, API_VERSION, peering
from stackforge_operator.models.backup import BackupPolicySpec, BackupPolicyStatus
from stackforge_operator.models.cel import (
    SERVER_DEFAULT_KEY,
    VALIDATIONS_KEY,
    Rule,
    failed_messages,
    name_in_labels_rule,
)
from stackforge_operator.models.common import field_path
from stackforge_operator.models.drill import DRDrillSpec, DRDrillStatus
from stackforge_operator.models.tenant import (
    StackForgeTenantSpec,
    StackForgeTenantStatus,
    tenant_name_rule,
)

Schema = dict[str, Any]

CATEGORY = "stackforge"
# The formats the API server checks; anything else would be silently ignored.
# "cidr": net.ParseCIDR in the API server (apiextensions validation formats).
KNOWN_FORMATS = frozenset({"cidr", "date-time", "int32", "int64"})
# On every cidr string: see _convert.
STRING_RULE: Final = {"rule": "type(self) == string", "message": "must be a string"}
FORBIDDEN_KEYS = frozenset(
    {
        "$ref", "$defs", "definitions", "anyOf", "oneOf", "allOf", "not", "const",
        "prefixItems", "title", "examples", "uniqueItems", "nullable", "propertyNames",
        SERVER_DEFAULT_KEY,
    }
)  # fmt: skip


class SchemaError(ValueError):
    """A model whose schema cannot be expressed as a structural schema."""


# --------------------------------------------------------------------------- schema rewrite


def structural(schema: Schema) -> Schema:
    """Rewrite a pydantic JSON schema into a Kubernetes structural schema."""
    schema = copy.deepcopy(schema)
    defs: dict[str, Schema] = schema.pop("$defs", {})
    return _convert(_inline(schema, defs, ()), "")


def _merge(base: Schema, over: Schema) -> Schema:
    """``over``'s keys win, except validations, which add up."""
    out = {**base, **over}
    rules = base.get(VALIDATIONS_KEY, []) + over.get(VALIDATIONS_KEY, [])
    if rules:
        out[VALIDATIONS_KEY] = rules
    return out


def _inline(node: Any, defs: dict[str, Schema], stack: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_inline(n, defs, stack) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in stack:
            raise SchemaError(f"recursive model {name}: structural schemas cannot recurse")
        target = _inline(defs[name], defs, (*stack, name))
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return _merge(target, _inline(rest, defs, stack))
    if "allOf" in node and len(node["allOf"]) == 1:
        rest = {k: v for k, v in node.items() if k != "allOf"}
        return _merge(_inline(node["allOf"][0], defs, stack), _inline(rest, defs, stack))
    return {k: _inline(v, defs, stack) for k, v in node.items()}


def _int_or_string(branches: list[Schema], path: str) -> Schema:
    kinds = sorted(b.get("type", "") for b in branches)
    if kinds != ["integer", "string"]:
        raise SchemaError(f"{path or '<root>'}: unsupported union of {kinds}")
    out: Schema = {}
    for b in branches:
        out.update({k: v for k, v in b.items() if k != "type"})
    out["x-kubernetes-int-or-string"] = True
    return out


def _convert(node: Schema, path: str) -> Schema:
    node = dict(node)
    if "anyOf" in node:
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        merged = branches[0] if len(branches) == 1 else _int_or_string(branches, path)
        node = _merge(merged, node)
    for key in ("title", "examples"):
        node.pop(key, None)
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "prefixItems" in node or "propertyNames" in node:
        raise SchemaError(f"{path}: tuples and constrained keys have no structural form")
    # Defaults only where a server-side default is meant (ServerDefault marker).
    node.pop("default", None)
    if SERVER_DEFAULT_KEY in node:
        node["default"] = node.pop(SERVER_DEFAULT_KEY)
    for bound in ("Minimum", "Maximum"):
        exclusive = f"exclusive{bound}"
        if isinstance(node.get(exclusive), int | float) and not isinstance(node[exclusive], bool):
            node[bound.lower()] = node.pop(exclusive)
            node[exclusive] = True
    if node.pop("uniqueItems", False):
        node.setdefault("x-kubernetes-list-type", "set")
    if "format" in node and node["format"] not in KNOWN_FORMATS:
        raise SchemaError(f"{path}: format {node['format']!r} is not checked by the API server")
    if node.get("format") == "cidr" and node.get("type") == "string":
        # The API server checks the format instead of the type, and lets a list through
        # (cidr: ["10.0.0.0/8"] was admitted, found by tests/chaos/test_fuzzed_specs.py);
        # CEL sees the value as it is and refuses it, naming the field. Not on
        # date-time strings: CEL reads those as timestamps, and the rule refused every
        # status write.
        node[VALIDATIONS_KEY] = [*node.get(VALIDATIONS_KEY, []), STRING_RULE]

    if "properties" in node:
        node["properties"] = {
            name: _convert(sub, f"{path}.{name}") for name, sub in node["properties"].items()
        }
    elif node.get("type") == "object":
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            node["additionalProperties"] = _convert(extra, f"{path}.*")
        else:
            node.pop("additionalProperties", None)
            node["x-kubernetes-preserve-unknown-fields"] = True
    elif not node.get("type") and not node.get("x-kubernetes-int-or-string"):
        # Any: a free-form value.
        node["x-kubernetes-preserve-unknown-fields"] = True
    if "items" in node:
        node["items"] = _convert(node["items"], f"{path}[]")
    if VALIDATIONS_KEY in node:
        order = {k: i for i, k in enumerate(("rule", "message", "fieldPath", "reason"))}
        node[VALIDATIONS_KEY] = [
            dict(sorted(v.items(), key=lambda kv: order[kv[0]])) for v in node[VALIDATIONS_KEY]
        ]
    return _ordered(node)


_KEY_ORDER = (
    "description", "type", "format", "enum", "default", "x-kubernetes-int-or-string",
    "minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "minLength", "maxLength",
    "pattern", "minItems", "maxItems", "maxProperties", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "required", "properties", "additionalProperties", "items",
    "x-kubernetes-preserve-unknown-fields", VALIDATIONS_KEY,
)  # fmt: skip


def _ordered(node: Schema) -> Schema:
    # A fixed key order keeps the YAML readable and the drift test stable.
    rank = {k: i for i, k in enumerate(_KEY_ORDER)}
    return dict(sorted(node.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def iter_schema(node: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node with its dotted path (``[]`` for list items, ``*`` for map values)."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from iter_schema(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from iter_schema(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from iter_schema(node["additionalProperties"], f"{path}.*")


def check_structural(schema: Schema) -> list[str]:
    """Problems that would make the API server refuse or mis-handle the schema."""
    problems: list[str] = []
    for path, node in iter_schema(schema):
        where = path or "<root>"
        problems += [f"{where}: forbidden key {k}" for k in node.keys() & FORBIDDEN_KEYS]
        if node.get("additionalProperties") is False:
            problems.append(f"{where}: additionalProperties: false")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{where}: both properties and additionalProperties")
        if not (
            node.get("type")
            or node.get("x-kubernetes-int-or-string")
            or node.get("x-kubernetes-preserve-unknown-fields")
        ):
            problems.append(f"{where}: no type")
        for name, sub in node.get("properties", {}).items():
            if not sub.get("description") and f"{path}.{name}" != ".metadata":
                problems.append(f"{path}.{name}: no description")
        if node.get("x-kubernetes-list-type") == "map":
            item = node.get("items", {})
            missing = set(node.get("x-kubernetes-list-map-keys", [])) - set(
                item.get("required", [])
            )
            if missing:
                problems.append(f"{where}: list map keys {sorted(missing)} not required")
        if node.get("type") == "string" and "pattern" in node and "maxLength" not in node:
            # Unbounded strings make CEL and regex cost estimates explode.
            problems.append(f"{where}: pattern without maxLength")
    return problems


# --------------------------------------------------------------------------- kinds


@dataclass(frozen=True)
class Column:
    """An additionalPrinterColumns entry."""

    name: str
    json_path: str
    type: Literal["string", "integer", "number", "boolean", "date"] = "string"
    description: str = ""
    priority: int = 0

    def to_crd(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            out["description"] = self.description
        if self.priority:
            out["priority"] = self.priority
        return out


def _ready_columns() -> list[Column]:
    cond = '.status.conditions[?(@.type=="Ready")]'
    return [
        Column("Ready", f"{cond}.status", description="Ready condition status."),
        Column("Reason", f"{cond}.reason", description="Ready condition reason."),
    ]


AGE = Column("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class Kind:
    """Everything crdgen needs to know about one kind."""

    kind: str
    plural: str
    short_name: str
    scope: Literal["Cluster", "Namespaced"]
    description: str
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: tuple[Column, ...]
    root_rules: tuple[Rule, ...] = ()
    # (specReplicasPath, statusReplicasPath, labelSelectorPath)
    scale: tuple[str, str, str] | None = None
    extra_labels: dict[str, str] = field(default_factory=dict)

    def violations(self, obj: Mapping[str, Any]) -> list[str]:
        """Why the models refuse a whole object (spec and root rules); empty when valid.

        The Python counterpart of admission: what the operator reports as
        Stalled if an object somehow got past the API server.
        """
        spec = obj.get("spec")
        try:
            self.spec.model_validate(spec)
        except ValidationError as err:
            return [f"{field_path(('spec', *e['loc']))}: {e['msg']}" for e in err.errors()]
        return failed_messages(self.root_rules, obj)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{API_GROUP}"

    @property
    def file_name(self) -> str:
        return f"{API_GROUP}_{self.plural}.yaml"


TENANT = Kind(
    kind="StackForgeTenant",
    plural="stackforgetenants",
    short_name="sft",
    # Namespaced, so that an HPA (which resolves scaleTargetRef in its own
    # namespace) can target the tenant; one tenant per namespace.
    scope="Namespaced",
    description=(
        "A customer's isolated StackForge stack, in a namespace of its own: PostgreSQL, "
        "Redis, Kafka, Kong, Consul and app services, domain and TLS, quotas and cost estimate."
    ),
    spec=StackForgeTenantSpec,
    status=StackForgeTenantStatus,
    columns=(
        Column("Tier", ".spec.tier", description="Service tier."),
        *_ready_columns(),
        Column("Components", ".status.componentsReady", description="Ready/wanted components."),
        Column(
            "Last Backup",
            ".status.lastBackup.lastSuccessTime",
            "date",
            "Age of the newest complete backup.",
        ),
        Column("Last Drill", ".status.lastDrill.verdict", description="Verdict of the last drill."),
        Column("Price", ".status.cost.priceMonthly", description="USD per month.", priority=1),
        AGE,
    ),
    root_rules=(tenant_name_rule(),),
    # kubectl scale / an HPA on the tenant scale its Kong gateway: see docs/api.md.
    scale=(".spec.components.kong.replicas", ".status.replicas", ".status.selector"),
)

BACKUP_POLICY = Kind(
    kind="BackupPolicy",
    plural="backuppolicies",
    short_name="sfbp",
    scope="Namespaced",
    description=(
        "Scheduled backups of a tenant (PostgreSQL dump, configuration, Grafana dashboards) "
        "to S3-compatible object storage, with retention."
    ),
    spec=BackupPolicySpec,
    status=BackupPolicyStatus,
    columns=(
        Column("Tenant", ".spec.tenantRef.name", description="Tenant backed up."),
        Column("Schedule", ".status.schedule", description="Schedule in effect."),
        *_ready_columns(),
        Column(
            "Last Backup",
            ".status.lastSuccessfulRun.completionTime",
            "date",
            "Age of the newest complete backup.",
        ),
        Column("Last Result", ".status.lastRun.result", description="Result of the newest run."),
        Column("Next", ".status.nextScheduleTime", description="Next run.", priority=1),
        Column("Last WAL", ".status.continuousArchiving.lastArchivedTime", "date",
               "Age of the newest archived WAL segment.", priority=1),
        Column("Restorable From", ".status.physicalBackups.recoverabilityWindow.firstPoint",
               description="First moment a point-in-time restore reaches.", priority=1),
        AGE,
    ),
    root_rules=(name_in_labels_rule(),),
)

DR_DRILL = Kind(
    kind="DRDrill",
    plural="drdrills",
    short_name="sfdr",
    scope="Namespaced",
    description=(
        "Disaster-recovery drills of a tenant: restore a backup into a sandbox, verify it "
        "and measure RTO and RPO against objectives."
    ),
    spec=DRDrillSpec,
    status=DRDrillStatus,
    columns=(
        Column("Tenant", ".spec.tenantRef.name", description="Tenant drilled."),
        Column("Phase", ".status.phase", description="Pending, Running, Passed or Failed."),
        *_ready_columns(),
        Column("Verdict", ".status.lastResult.verdict", description="Last verdict."),
        Column("RTO", ".status.lastResult.rtoSeconds", "integer", "Measured RTO (s)."),
        Column("RPO", ".status.lastResult.rpoSeconds", "integer", "Measured RPO (s)."),
        Column("Last Drill", ".status.lastResult.completionTime", "date", "Age of the last drill."),
        AGE,
    ),
    root_rules=(name_in_labels_rule(),),
)

KINDS: tuple[Kind, ...] = (TENANT, BACKUP_POLICY, DR_DRILL)


def model_schema(model: type[BaseModel]) -> Schema:
    """The structural schema of one model (camelCase, validation mode)."""
    return structural(model.model_json_schema(by_alias=True, mode="validation"))


def openapi_schema(kind: Kind) -> Schema:
    """The whole object's ``openAPIV3Schema``."""
    root: Schema = {
        "description": kind.description,
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this object.",
                "type": "string",
            },
            "kind": {
                "description": "Kind is the REST resource this object represents.",
                "type": "string",
            },
            # The API server allows nothing but the type here (name and
            # generateName constraints aside); it knows ObjectMeta itself.
            "metadata": {"type": "object"},
            "spec": model_schema(kind.spec),
            "status": model_schema(kind.status),
        },
    }
    if kind.root_rules:
        root[VALIDATIONS_KEY] = [r.to_schema() for r in kind.root_rules]
    problems = check_structural(root)
    if problems:
        raise SchemaError(f"{kind.kind}: " + "; ".join(problems))
    return root


def crd(kind: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    subresources: dict[str, Any] = {"status": {}}
    if kind.scale is not None:
        spec_path, status_path, selector_path = kind.scale
        subresources["scale"] = {
            "specReplicasPath": spec_path,
            "statusReplicasPath": status_path,
            "labelSelectorPath": selector_path,
        }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name,
            "labels": {"app.kubernetes.io/part-of": "stackforge", **kind.extra_labels},
        },
        "spec": {
            "group": API_GROUP,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": [kind.short_name],
                "categories": [CATEGORY],
            },
            "scope": kind.scope,
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema(kind)},
                    "subresources": subresources,
                    "additionalPrinterColumns": [c.to_crd() for c in kind.columns],
                }
            ],
        },
    }


def crds() -> list[dict[str, Any]]:
    """All CustomResourceDefinitions, as dicts ready to apply."""
    return [crd(k) for k in KINDS]


# --------------------------------------------------------------------------- rendering

HEADER = (
    "# Generated from operator/stackforge_operator/models by stackforge_operator.crdgen.\n"
    "# Do not edit: change the models and run `stackforge-operator crds`.\n"
)


class _Dumper(yaml.SafeDumper):
    """Block style; multi-line strings as literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(kind: Kind) -> str:
    """YAML text of one kind's CRD file."""
    return HEADER + _dump(crd(kind))


PEERING_FILE = f"{peering.GROUP}_{peering.PLURAL}.yaml"
PEERING_HEADER = (
    "# Generated from operator/stackforge_operator/peering.py by stackforge_operator.crdgen.\n"
    "# kopf's ClusterKopfPeering CRD (as in kopf's peering.yaml), for operator replicas that\n"
    "# peer (HA); shared with any other kopf operator peering cluster-wide.\n"
)


def _dump(obj: dict[str, Any]) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=10_000, allow_unicode=True)


def render_all() -> dict[str, str]:
    """File name -> YAML text: one file per kind, and kopf's peering CRD."""
    files = {k.file_name: render(k) for k in KINDS}
    files[PEERING_FILE] = PEERING_HEADER + _dump(peering.cluster_peering_crd())
    return files


def write_crds(directory: Path | str) -> list[Path]:
    """Write every CRD file into ``directory``; returns the paths written."""
    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m stackforge_operator.crdgen [DIR]`` (default: ./crds)."""
    args = sys.argv[1:] if argv is None else argv
    for path in write_crds(args[0] if args else "crds"):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
