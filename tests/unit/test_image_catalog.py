"""image_catalog.py: defaults, settings, the catalog file and its errors, the own-pod lookup."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes.config import ConfigException

from stackforge_operator import handlers, image_catalog, rbac
from stackforge_operator.builders import exporters
from stackforge_operator.image_catalog import (
    CATALOG_ENV,
    OPERATOR_IMAGE_ENV,
    PULL_SECRETS_ENV,
    REGISTRY_ENV,
    CatalogError,
    from_settings,
    load,
    parse_catalog_file,
)
from stackforge_operator.version import VERSION
from tests.unit import test_manifests as manifests

REPO = Path(__file__).resolve().parents[2]
MIRROR = "mirror.example.internal:5000/team"

# --------------------------------------------------------------------------- defaults


def test_defaults() -> None:
    c = from_settings({})
    assert c.operator == f"stackforge/stackforge-operator:{VERSION}"
    assert c.postgres_image(15) == "stackforge/postgres:15"
    assert c.postgres_exporter_image(16) == "stackforge/postgres:16"
    assert c.pgbouncer == "stackforge/pgbouncer:1.18"
    assert c.redis_image("7.2") == "redis:7.2"
    assert c.kafka_image("3.7.0") == "apache/kafka:3.7.0"
    assert c.kong_image("3.6") == "kong:3.6"
    assert c.consul_image("1.18") == "hashicorp/consul:1.18"
    assert c.redis_exporter == "oliver006/redis_exporter:v1.67.0"
    assert c.kafka_exporter == "danielqsj/kafka-exporter:v1.9.0"
    assert c.image_pull_secrets == () and c.pod_pull_secrets() == []
    assert c.registry == "" and not c.operator_pinned


def test_no_default_names_a_registry_host() -> None:
    # Where images come from is the user's choice (a prefix), never ours.
    for role in image_catalog.ROLES:
        assert not image_catalog.has_host(role.default), role


@pytest.mark.parametrize(("reference", "host"), [
    ("redis:7.2", False), ("stackforge/postgres:15", False), ("a/b/c:1", False),
    ("localhost/a:1", True), ("mirror.example.internal/a:1", True),
    ("mirror:5000/a", True), ("registry.example.com/acme/api:1", True),
])
def test_has_host_follows_the_runtimes_rule(reference: str, host: bool) -> None:
    assert image_catalog.has_host(reference) is host


# --------------------------------------------------------------------------- settings


def test_registry_prefixes_every_host_less_reference() -> None:
    c = from_settings({REGISTRY_ENV: f"{MIRROR}/"}, {"kong": "registry.example.com/kong:{version}",
                                                     "redis": "acme/redis:{version}"})
    assert c.registry == MIRROR
    assert c.operator == f"{MIRROR}/stackforge/stackforge-operator:{VERSION}"
    assert c.postgres_image(15) == f"{MIRROR}/stackforge/postgres:15"
    assert c.pgbouncer == f"{MIRROR}/stackforge/pgbouncer:1.18"
    # File entries alike; one that names its host keeps it.
    assert c.redis_image("7.2") == f"{MIRROR}/acme/redis:7.2"
    assert c.kong_image("3.6") == "registry.example.com/kong:3.6"


def test_operator_image_setting_is_taken_as_written() -> None:
    c = from_settings({REGISTRY_ENV: MIRROR, OPERATOR_IMAGE_ENV: "acme/operator:1.2"})
    assert c.operator == "acme/operator:1.2"
    assert c.operator_pinned
    # A catalog file's operator entry pins it too (and takes the prefix like any entry).
    c = from_settings({REGISTRY_ENV: MIRROR}, {"operator": "acme/operator:1.3"})
    assert c.operator == f"{MIRROR}/acme/operator:1.3" and c.operator_pinned


def test_pull_secrets_are_trimmed_and_deduplicated() -> None:
    c = from_settings({PULL_SECRETS_ENV: " regcred,,mirror-pull , regcred "})
    assert c.image_pull_secrets == ("regcred", "mirror-pull")
    assert c.pod_pull_secrets() == [{"name": "regcred"}, {"name": "mirror-pull"}]


def test_empty_settings_mean_none() -> None:
    # manifests/deployment.yaml sets both variables to "" by default.
    assert from_settings({REGISTRY_ENV: "", PULL_SECRETS_ENV: "", OPERATOR_IMAGE_ENV: ""}) == (
        from_settings({}))


# --------------------------------------------------------------------------- the catalog file


def test_file_entries_replace_defaults() -> None:
    text = "postgres: acme/pg:{major}-custom\npostgres-exporter: prom/pg-exporter:v1\n"
    c = from_settings({}, parse_catalog_file(text, "catalog.yaml"))
    assert c.postgres_image(16) == "acme/pg:16-custom"
    assert c.postgres_exporter_image(16) == "prom/pg-exporter:v1"
    assert c.redis_image("7.2") == "redis:7.2"


def test_json_and_empty_files() -> None:
    assert parse_catalog_file(json.dumps({"pgbouncer": "acme/pgbouncer:1"}), "c.json") == {
        "pgbouncer": "acme/pgbouncer:1"}
    assert parse_catalog_file("", "c.yaml") == {}
    assert parse_catalog_file("# nothing\n", "c.yaml") == {}


@pytest.mark.parametrize(("text", "problem"), [
    ("redis-image: redis:{version}\n",
     "c.yaml: unknown key 'redis-image'; the catalog knows operator, postgres,"),
    ("postgres_exporter: x:1\n", "unknown key 'postgres_exporter'"),
    ("redis: redis:7.2\n", "c.yaml: redis: 'redis:7.2' must contain {version}"),
    ("postgres: postgres:16\n", "postgres: 'postgres:16' must contain {major}"),
    ("pgbouncer: pgbouncer:{version}\n",
     "pgbouncer: {version} is not known here; this entry takes no placeholder"),
    ("postgres: pg:{version}\n", "postgres: {version} is not known here; this entry takes only"),
    ("kong: Kong:{version}\n", "kong: 'Kong:{version}' is not an image reference"),
    ("consul: hashicorp/consul {version}\n", "is not an image reference"),
    ("kafka: 3\n", "kafka: want an image reference (a non-empty string), got 3"),
    ("kafka: ''\n", "want an image reference"),
    ("- redis\n", "c.yaml: want a mapping of role to image reference, got list"),
    ("redis: [\n", "c.yaml: not YAML or JSON"),
])
def test_file_errors_name_the_key(text: str, problem: str) -> None:
    with pytest.raises(CatalogError) as refused:
        parse_catalog_file(text, "c.yaml")
    assert problem in str(refused.value)


@pytest.mark.parametrize(("environ", "problem"), [
    ({REGISTRY_ENV: "https://mirror.example.internal"}, f"{REGISTRY_ENV}='https://"),
    ({REGISTRY_ENV: "Mirror.Example"}, "want host[:port][/path]"),
    ({PULL_SECRETS_ENV: "regcred,Bad_Name"}, f"{PULL_SECRETS_ENV}: 'Bad_Name' is not a Secret"),
    ({OPERATOR_IMAGE_ENV: "acme/op 1"}, f"{OPERATOR_IMAGE_ENV}='acme/op 1' is not an image"),
])
def test_setting_errors_name_the_setting(environ: dict[str, str], problem: str) -> None:
    with pytest.raises(CatalogError) as refused:
        from_settings(environ)
    assert problem in str(refused.value)


def test_load_reads_the_named_file(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text("kafka: acme/kafka:{version}\n")
    c = load({CATALOG_ENV: str(path), REGISTRY_ENV: MIRROR})
    assert c.kafka_image("3.7.0") == f"{MIRROR}/acme/kafka:3.7.0"
    path.write_text("zookeeper: zk:3\n")
    with pytest.raises(CatalogError, match=f"{CATALOG_ENV}={path}: unknown key 'zookeeper'"):
        load({CATALOG_ENV: str(path)})
    with pytest.raises(CatalogError, match="cannot read"):
        load({CATALOG_ENV: str(tmp_path / "missing.yaml")})


def test_the_process_catalog_is_loaded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    image_catalog.install(None)
    monkeypatch.setenv(REGISTRY_ENV, MIRROR)
    first = image_catalog.current()
    monkeypatch.setenv(REGISTRY_ENV, "other.example.internal")
    assert image_catalog.current() is first
    assert first.registry == MIRROR


def test_chart_overrides_are_the_catalogs_roles() -> None:
    # values.schema.json lists every role but the operator (the chart's image.* is that one).
    schema = json.loads((REPO / "charts" / "stackforge-operator" / "values.schema.json")
                        .read_text())
    overrides = schema["properties"]["images"]["properties"]["overrides"]
    assert set(overrides["properties"]) == set(image_catalog.ROLE_KEYS) - {"operator"}
    assert overrides["additionalProperties"] is False


# --------------------------------------------------------------------------- builders


def test_postgres_exporter_names_its_command() -> None:
    # The default image is PostgreSQL's, whose entrypoint would start a server.
    sidecar = exporters.postgres_exporter(15, "config", "/etc/config", "queries.yaml")
    assert sidecar["image"] == "stackforge/postgres:15"
    assert sidecar["command"] == ["postgres_exporter"]
    assert "args" not in sidecar


# --------------------------------------------------------------------------- the operator's own pod


def _pod(image: str) -> dict[str, Any]:
    return {"metadata": {"name": "op-1", "namespace": "stackforge-system"},
            "spec": {"containers": [{"name": "sidecar", "image": "other:1"},
                                    {"name": "operator", "image": image}]},
            # The runtime's normalised spelling, never what the Jobs should use.
            "status": {"containerStatuses": [{"name": "operator", "image": f"x/{image}"}]}}


def test_container_image_reads_the_spec() -> None:
    assert image_catalog.container_image(_pod("acme/op:2"), "operator") == "acme/op:2"
    assert image_catalog.container_image(_pod("acme/op:2"), "missing") is None
    assert image_catalog.container_image({}, "operator") is None


def test_own_pod_needs_name_and_namespace() -> None:
    env = {"POD_NAME": "op-1", "POD_NAMESPACE": "stackforge-system"}
    assert image_catalog.own_pod(env) == image_catalog.PodRef("stackforge-system", "op-1")
    assert image_catalog.own_pod({"POD_NAME": "op-1"}) is None
    assert image_catalog.own_pod({}) is None


def test_deployment_container_is_the_one_looked_up() -> None:
    assert manifests.container()["name"] == image_catalog.OPERATOR_CONTAINER


# Reading the Pod (its image adopted, a missing pod or container) is
# tests/cluster/test_image_catalog.py, against the API server; here, where nothing is read.


@pytest.mark.usefixtures("no_cluster")
def test_a_setting_wins_over_the_own_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "op-1")
    monkeypatch.setenv("POD_NAMESPACE", "stackforge-system")
    image_catalog.install(from_settings({OPERATOR_IMAGE_ENV: "acme/op:9"}))
    handlers.adopt_own_image()
    assert image_catalog.current().operator == "acme/op:9"
    # Had the pod been read, it would have failed like this:
    image_catalog.install(from_settings({}))
    with pytest.raises(ConfigException):
        handlers.adopt_own_image()


@pytest.mark.usefixtures("no_cluster")
@pytest.mark.parametrize("unset", ["POD_NAME", "POD_NAMESPACE"])
def test_outside_a_pod_the_default_stays(monkeypatch: pytest.MonkeyPatch, unset: str) -> None:
    monkeypatch.setenv("POD_NAME", "op-1")
    monkeypatch.setenv("POD_NAMESPACE", "stackforge-system")
    monkeypatch.delenv(unset)
    handlers.adopt_own_image()
    assert image_catalog.current().operator == f"stackforge/stackforge-operator:{VERSION}"


def test_the_cluster_role_lets_the_operator_read_its_pod() -> None:
    assert rbac.allows(rbac.CLUSTER_ROLE_RULES, "", "pods", "get", "op-1")
