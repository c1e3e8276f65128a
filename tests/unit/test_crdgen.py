"""crdgen: structural schemas, CRD shape, and the committed crds/ staying in sync."""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import pytest
import yaml
from pydantic import BaseModel, Field

from stackforge_operator import API_GROUP, API_VERSION
from stackforge_operator.crdgen import (
    FORBIDDEN_KEYS,
    KINDS,
    STRING_RULE,
    TENANT,
    Kind,
    SchemaError,
    check_structural,
    crd,
    iter_schema,
    openapi_schema,
    render_all,
    structural,
    write_crds,
)
from stackforge_operator.models.cel import ServerDefault
from stackforge_operator.models.common import SpecModel
from tests.cluster.admission_cases import example
from tests.unit import celeval

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
IDS = [k.kind for k in KINDS]


@pytest.fixture(params=KINDS, ids=IDS)
def kind(request: pytest.FixtureRequest) -> Kind:
    value: Kind = request.param
    return value


def _walk_raw(node: Any, path: str = "") -> list[tuple[str, Any]]:
    # Every dict in the tree, wherever it sits (not only schema positions).
    out = [(path, node)] if isinstance(node, dict) else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _walk_raw(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _walk_raw(v, f"{path}/{i}")
    return out


# --------------------------------------------------------------------------- structural


def test_schema_is_structural(kind: Kind) -> None:
    schema = openapi_schema(kind)
    assert check_structural(schema) == []
    for path, node in iter_schema(schema):
        assert not node.keys() & FORBIDDEN_KEYS, path
        assert node.get("additionalProperties") is not False, path
        assert node.get("type") != "null", path
        assert "default" not in node or path in SERVER_DEFAULTS[kind.kind], path


def test_no_forbidden_keyword_anywhere_in_the_crd(kind: Kind) -> None:
    forbidden = {
        "$ref",
        "$defs",
        "anyOf",
        "oneOf",
        "allOf",
        "const",
        "prefixItems",
        "title",
        "examples",
        "nullable",
        "uniqueItems",
    }
    for path, node in _walk_raw(crd(kind)):
        # CEL rules are dicts too; their keys are rule/message/fieldPath/reason.
        assert not node.keys() & forbidden, path
        assert node.get("additionalProperties") is not False, path


def test_every_property_has_a_description(kind: Kind) -> None:
    schema = openapi_schema(kind)
    missing = [
        f"{path}.{name}"
        for path, node in iter_schema(schema)
        for name, sub in node.get("properties", {}).items()
        if not sub.get("description") and f"{path}.{name}" != ".metadata"
    ]
    assert missing == []


# Defaults the API server fills in, by design (see ServerDefault).
SERVER_DEFAULTS: dict[str, dict[str, Any]] = {
    "StackForgeTenant": {
        ".spec.components": {},
        ".spec.components.postgres": {},
        ".spec.components.postgres.version": 15,
        ".spec.components.postgres.database": "app",
        ".spec.components.postgres.pooler": {},
    },
    "BackupPolicy": {".spec.targets": ["Postgres", "Configuration"]},
    "DRDrill": {".spec.historyLimit": 10},
}


def test_server_defaults_are_exactly_the_meant_ones(kind: Kind) -> None:
    found = {p: n["default"] for p, n in iter_schema(openapi_schema(kind)) if "default" in n}
    assert found == SERVER_DEFAULTS[kind.kind]


def test_strings_and_lists_in_spec_are_bounded(kind: Kind) -> None:
    # The API server estimates CEL cost from maxLength/maxItems: unbounded
    # strings or lists under a rule get the CRD refused.
    spec = openapi_schema(kind)["properties"]["spec"]
    for path, node in iter_schema(spec):
        if (
            node.get("type") == "string"
            and "enum" not in node
            and node.get("format") != "date-time"
        ):
            assert "maxLength" in node, path
        if node.get("type") == "array":
            assert "maxItems" in node, path
        if node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
            assert "maxProperties" in node, path


def test_list_maps_require_their_keys(kind: Kind) -> None:
    for path, node in iter_schema(openapi_schema(kind)):
        if node.get("x-kubernetes-list-type") == "map":
            keys = set(node["x-kubernetes-list-map-keys"])
            assert keys <= set(node["items"].get("required", [])), path


def test_cel_rules_compile_and_have_messages(kind: Kind) -> None:
    rules = [
        r
        for _, n in iter_schema(openapi_schema(kind))
        for r in n.get("x-kubernetes-validations", [])
    ]
    assert rules
    for rule in rules:
        celeval.compile_rule(rule["rule"])
        assert rule["message"] and "\n" not in rule["message"]
        # Kubernetes escapes reserved words; a bare one is an untyped lookup.
        assert not re.search(r"\.namespace\b", rule["rule"]), rule["rule"]


# --------------------------------------------------------------------------- conversions


class _Color(enum.StrEnum):
    RED = "red"


class _Leaf(SpecModel):
    """A leaf."""

    n: int = Field(1, description="n")


class _Toy(SpecModel):
    """Toy model exercising every conversion."""

    opt: Optional[_Leaf] = Field(None, description="optional model")  # noqa: UP045
    leaf: _Leaf = Field(default_factory=_Leaf, description="leaf")
    ios: int | Annotated[str, Field(max_length=8, pattern="^[0-9]+m$")] = Field(
        1, description="int or string"
    )
    pos: int = Field(1, gt=0, description="positive")
    tags: set[Annotated[str, Field(max_length=5)]] = Field(default_factory=set, description="a set")
    one: Literal["only"] = Field("only", description="a constant")
    color: _Color = Field(_Color.RED, description="an enum")
    free: dict[str, Any] = Field(default_factory=dict, description="free-form")
    anything: Any = Field(None, description="anything")
    labels: dict[str, Annotated[str, Field(max_length=5)]] = Field(
        default_factory=dict, description="string map"
    )
    pinned: Annotated[int, ServerDefault(3)] = Field(3, description="server default")


def test_conversions() -> None:
    s = structural(_Toy.model_json_schema(by_alias=True))
    p = s["properties"]
    assert p["opt"]["type"] == "object" and "nullable" not in p["opt"]
    assert p["opt"]["description"] == "optional model"  # the field's, not the class's
    assert p["leaf"]["properties"]["n"] == {"description": "n", "type": "integer"}
    assert p["ios"] == {
        "description": "int or string",
        "x-kubernetes-int-or-string": True,
        "maxLength": 8,
        "pattern": "^[0-9]+m$",
    }
    assert (p["pos"]["minimum"], p["pos"]["exclusiveMinimum"]) == (0, True)
    assert p["tags"]["x-kubernetes-list-type"] == "set" and "uniqueItems" not in p["tags"]
    assert p["one"]["enum"] == ["only"]
    assert p["color"]["enum"] == ["red"]
    assert p["free"]["x-kubernetes-preserve-unknown-fields"] is True
    assert p["anything"] == {
        "description": "anything",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    assert p["labels"]["additionalProperties"] == {"type": "string", "maxLength": 5}
    assert p["pinned"]["default"] == 3
    assert all("default" not in v for k, v in p.items() if k != "pinned")
    assert check_structural(s) == []


class _Node(BaseModel):
    child: Optional[_Node] = None  # noqa: UP045


def test_recursive_models_are_refused() -> None:
    with pytest.raises(SchemaError, match="recursive"):
        structural(_Node.model_json_schema())


class _Tuple(BaseModel):
    pair: tuple[int, str]


def test_tuples_are_refused() -> None:
    with pytest.raises(SchemaError, match="structural"):
        structural(_Tuple.model_json_schema())


# --------------------------------------------------------------------------- CRD shape


def test_crd_names_scope_and_subresources(kind: Kind) -> None:
    c = crd(kind)
    spec = c["spec"]
    assert c["metadata"]["name"] == f"{kind.plural}.{API_GROUP}"
    assert spec["group"] == API_GROUP
    assert spec["names"]["shortNames"] == [kind.short_name]
    assert spec["names"]["categories"] == ["stackforge"]
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (API_VERSION, True, True)
    assert version["subresources"]["status"] == {}
    names = [col["name"] for col in version["additionalPrinterColumns"]]
    assert {"Ready", "Reason", "Age"} <= set(names)
    assert names[-1] == "Age"


def test_kinds_table() -> None:
    assert {k.short_name for k in KINDS} == {"sft", "sfbp", "sfdr"}
    assert {k.kind: k.scope for k in KINDS} == {
        "StackForgeTenant": "Namespaced",
        "BackupPolicy": "Namespaced",
        "DRDrill": "Namespaced",
    }
    tenant_cols = {c.name for c in TENANT.columns}
    assert {"Tier", "Components", "Last Backup", "Last Drill"} <= tenant_cols


def _resolve(schema: dict[str, Any], json_path: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = schema
    for step in re.sub(r"\[\?\(.*?\)\]", "[]", json_path).strip(".").split("."):
        if node is None:
            return None
        name, is_list = (step[:-2], True) if step.endswith("[]") else (step, False)
        if name == "metadata":
            return {"type": "object"}
        node = node.get("properties", {}).get(name)
        if node is not None and is_list:
            node = node.get("items")
    return node


def test_printer_columns_and_scale_paths_resolve(kind: Kind) -> None:
    schema = openapi_schema(kind)
    version = crd(kind)["spec"]["versions"][0]
    for col in version["additionalPrinterColumns"]:
        node = _resolve(schema, col["jsonPath"])
        assert node is not None, col
        if col["type"] == "date" and col["name"] != "Age":
            assert node.get("format") == "date-time", col
        if col["type"] == "integer":
            assert node.get("type") == "integer", col
    scale = version["subresources"].get("scale")
    assert (scale is not None) == (kind is TENANT)
    if scale:
        assert _resolve(schema, scale["specReplicasPath"]) == _resolve(
            schema, ".spec.components.kong.replicas"
        )
        assert _resolve(schema, scale["statusReplicasPath"])["type"] == "integer"  # type: ignore[index]
        assert _resolve(schema, scale["labelSelectorPath"])["type"] == "string"  # type: ignore[index]


def test_status_declares_the_fields_the_design_needs() -> None:
    # The API server prunes undeclared status fields: pin the ones other
    # components rely on.
    want = {
        "StackForgeTenant": [
            ".status.observedGeneration",
            ".status.conditions[].lastTransitionTime",
            ".status.replicas",
            ".status.readyReplicas",
            ".status.selector",
            ".status.cost.priceMonthly",
            ".status.lastBackup.lastSuccessTime",
            ".status.lastDrill.verdict",
            ".status.components[].ready",
        ],
        "BackupPolicy": [
            ".status.lastRun.sha256",
            ".status.lastSuccessfulRun.location",
            ".status.nextScheduleTime",
            ".status.lastScheduleTime",
            ".status.activeRun.id",
        ],
        "DRDrill": [
            ".status.activeRun.step",
            ".status.lastResult.checks[].passed",
            ".status.lastResult.rtoSeconds",
            ".status.history[].verdict",
            ".status.phase",
        ],
    }
    for k in KINDS:
        schema = openapi_schema(k)
        for path in want[k.kind]:
            assert _resolve(schema, path) is not None, (k.kind, path)


# --------------------------------------------------------------------------- files


def test_committed_crds_match_the_models() -> None:
    rendered = render_all()
    committed = {p.name: p.read_text() for p in CRD_DIR.glob("*.yaml")}
    assert set(committed) == set(rendered), "crds/ has missing or stale files"
    stale = [name for name, text in rendered.items() if committed[name] != text]
    assert not stale, f"crds/ drifted from the models; run `stackforge-operator crds`: {stale}"


def test_rendered_yaml_loads_back_to_the_crd(kind: Kind) -> None:
    assert yaml.safe_load(render_all()[kind.file_name]) == crd(kind)


def test_write_crds(tmp_path: Path) -> None:
    written = write_crds(tmp_path / "out")
    assert sorted(p.name for p in written) == sorted(render_all())
    assert all(p.read_text().startswith("# Generated") for p in written)


@pytest.mark.parametrize("kind_name", IDS)
def test_examples_validate_against_models(kind_name: str) -> None:
    k = next(k for k in KINDS if k.kind == kind_name)
    obj = example(kind_name)
    assert obj["apiVersion"] == f"{API_GROUP}/{API_VERSION}"
    assert obj["kind"] == kind_name
    k.spec.model_validate(obj["spec"])
    assert k.violations(obj) == []


def test_every_cidr_string_carries_the_cel_type_rule_and_no_other_string() -> None:
    """The API server checks a cidr format instead of the type and lets a list through
    (found by the fuzz test): each cidr string also has STRING_RULE. Date-time strings
    must not: CEL reads them as timestamps, and the rule would refuse every status."""
    cidrs = 0
    for text in render_all().values():
        crd = yaml.safe_load(text)
        for version in crd["spec"]["versions"]:
            for path, node in iter_schema(version["schema"]["openAPIV3Schema"]):
                ruled = STRING_RULE in node.get("x-kubernetes-validations", [])
                if node.get("format") == "cidr":
                    cidrs += 1
                    assert ruled, path
                else:
                    assert not ruled, path
    assert cidrs == 2
