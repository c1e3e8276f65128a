"""Which container image each role runs: one catalog for the whole operator.

Every image reference the operator writes into a pod comes from here, so a
user who mirrors the images sets one prefix (``STACKFORGE_IMAGE_REGISTRY``)
instead of chasing references through the builders. The defaults name no
registry host on purpose: a host-less reference is resolved by the node's
container runtime (its default registry or a mirror it is configured with),
and a prefix, when set, decides where everything comes from.

Settings, read once per process (:func:`current`):

- ``STACKFORGE_IMAGE_CATALOG``: a YAML or JSON file mapping any of the
  :data:`ROLES` to a reference; unknown keys are refused;
- ``STACKFORGE_IMAGE_REGISTRY``: a prefix (``host[:port][/path]``) put before
  every host-less reference of the catalog, defaults and file entries alike;
- ``STACKFORGE_IMAGE_PULL_SECRETS``: comma-separated Secret names every pod
  the operator creates gets as ``imagePullSecrets``;
- ``STACKFORGE_OPERATOR_IMAGE``: the operator's image, which the backup and
  drill runner Jobs run, taken as written (no prefix).

Without an operator image in the settings, the operator, when it runs in a
pod, takes the image of its own container at start-up (handlers.py): the
runner Jobs then run exactly what the Deployment runs, whatever the install
method wrote there.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from stackforge_operator.models.common import DNS_SUBDOMAIN_RE, IMAGE_RE
from stackforge_operator.version import VERSION

CATALOG_ENV: Final = "STACKFORGE_IMAGE_CATALOG"
REGISTRY_ENV: Final = "STACKFORGE_IMAGE_REGISTRY"
PULL_SECRETS_ENV: Final = "STACKFORGE_IMAGE_PULL_SECRETS"
OPERATOR_IMAGE_ENV: Final = "STACKFORGE_OPERATOR_IMAGE"
# Set by the Deployment through the downward API (manifests/, the chart).
POD_NAME_ENV: Final = "POD_NAME"
POD_NAMESPACE_ENV: Final = "POD_NAMESPACE"
# The operator container's name in manifests/deployment.yaml and the chart.
OPERATOR_CONTAINER: Final = "operator"

MAJOR: Final = "{major}"
VERSION_PLACEHOLDER: Final = "{version}"


@dataclass(frozen=True)
class Role:
    """One catalog entry: its key in the file, its default, the placeholder it takes."""

    key: str
    default: str
    placeholder: str | None = None
    # A component whose version the tenant chooses must name it in its image,
    # or every tenant would silently run the same version whatever it asked for.
    placeholder_required: bool = False

    @property
    def field(self) -> str:
        return self.key.replace("-", "_")


ROLES: Final[tuple[Role, ...]] = (
    Role("operator", f"stackforge/stackforge-operator:{VERSION}"),
    # The project's own PostgreSQL image (images/postgres/).
    Role("postgres", f"stackforge/postgres:{MAJOR}", MAJOR, placeholder_required=True),
    # The project's own PgBouncer image (images/pgbouncer/): its init program
    # writes the auth file (builders/pooler.py).
    Role("pgbouncer", "stackforge/pgbouncer:1.18"),
    Role("redis", f"redis:{VERSION_PLACEHOLDER}", VERSION_PLACEHOLDER, placeholder_required=True),
    Role("kafka", f"apache/kafka:{VERSION_PLACEHOLDER}", VERSION_PLACEHOLDER,
         placeholder_required=True),
    Role("kong", f"kong:{VERSION_PLACEHOLDER}", VERSION_PLACEHOLDER, placeholder_required=True),
    Role("consul", f"hashicorp/consul:{VERSION_PLACEHOLDER}", VERSION_PLACEHOLDER,
         placeholder_required=True),
    # The PostgreSQL image carries the exporter too: one image less to mirror.
    Role("postgres-exporter", f"stackforge/postgres:{MAJOR}", MAJOR),
    Role("redis-exporter", "oliver006/redis_exporter:v1.67.0"),
    Role("kafka-exporter", "danielqsj/kafka-exporter:v1.9.0"),
    # The Prometheus project's exporter of Consul's health, catalog and raft:
    # scrapers reach it, never Consul's own HTTP API (builders/exporters.py).
    Role("consul-exporter", "prom/consul-exporter:v0.13.0"),
)
ROLE_KEYS: Final = tuple(role.key for role in ROLES)
_BY_KEY: Final = {role.key: role for role in ROLES}

# What a placeholder stands for when a template is checked for validity.
_SAMPLES: Final = {MAJOR: "15", VERSION_PLACEHOLDER: "1.0"}
_PLACEHOLDER_RE: Final = re.compile(r"\{[^{}]*\}")
# The part of IMAGE_RE before the repository's last component: host[:port][/path].
REGISTRY_RE: Final = (
    r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*$"
)


class CatalogError(ValueError):
    """A setting of the catalog is wrong; the message names the setting and the key."""


@dataclass(frozen=True)
class ImageCatalog:
    """Final references (prefix applied) per role; ``{major}``/``{version}`` filled per tenant."""

    operator: str
    postgres: str
    pgbouncer: str
    redis: str
    kafka: str
    kong: str
    consul: str
    postgres_exporter: str
    redis_exporter: str
    kafka_exporter: str
    consul_exporter: str
    image_pull_secrets: tuple[str, ...] = ()
    registry: str = ""
    # True when a setting named the operator image: then it is not looked up
    # from the operator's own pod.
    operator_pinned: bool = False

    def postgres_image(self, major: int) -> str:
        return self.postgres.replace(MAJOR, str(major))

    def postgres_exporter_image(self, major: int) -> str:
        return self.postgres_exporter.replace(MAJOR, str(major))

    def redis_image(self, version: str) -> str:
        return self.redis.replace(VERSION_PLACEHOLDER, version)

    def kafka_image(self, version: str) -> str:
        return self.kafka.replace(VERSION_PLACEHOLDER, version)

    def kong_image(self, version: str) -> str:
        return self.kong.replace(VERSION_PLACEHOLDER, version)

    def consul_image(self, version: str) -> str:
        return self.consul.replace(VERSION_PLACEHOLDER, version)

    def pod_pull_secrets(self) -> list[dict[str, str]]:
        """The ``imagePullSecrets`` of a pod spec."""
        return [{"name": name} for name in self.image_pull_secrets]

    def with_operator(self, image: str) -> ImageCatalog:
        """This catalog with the image the operator found itself running in."""
        return dataclasses.replace(self, operator=image)


# --------------------------------------------------------------------------- parsing (pure)


def has_host(reference: str) -> bool:
    """Whether a reference names its registry (the container runtimes' own rule)."""
    first, slash, _ = reference.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def with_registry(reference: str, registry: str) -> str:
    if not registry or has_host(reference):
        return reference
    return f"{registry}/{reference}"


def _check_reference(role: Role, value: object, source: str) -> str:
    where = f"{source}: {role.key}"
    if not isinstance(value, str) or not value.strip():
        raise CatalogError(f"{where}: want an image reference (a non-empty string), "
                           f"got {value!r}")
    reference = value.strip()
    found = set(_PLACEHOLDER_RE.findall(reference))
    allowed = {role.placeholder} if role.placeholder else set()
    if found - allowed:
        takes = f"only {role.placeholder}" if role.placeholder else "no placeholder"
        raise CatalogError(f"{where}: {', '.join(sorted(found - allowed))} is not known here; "
                           f"this entry takes {takes}")
    if role.placeholder_required and role.placeholder not in found:
        raise CatalogError(f"{where}: {reference!r} must contain {role.placeholder}: each "
                           f"tenant's {role.key} version picks its image")
    sample = reference
    for placeholder, text in _SAMPLES.items():
        sample = sample.replace(placeholder, text)
    if not re.fullmatch(IMAGE_RE, sample):
        raise CatalogError(f"{where}: {reference!r} is not an image reference "
                           "(repository[:tag][@sha256:digest], lower-case repository)")
    return reference


def parse_catalog_file(text: str, source: str) -> dict[str, str]:
    """Role key -> reference from a YAML or JSON document; every key must be a role."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CatalogError(f"{source}: not YAML or JSON: {error}") from None
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise CatalogError(f"{source}: want a mapping of role to image reference, "
                           f"got {type(document).__name__}")
    entries: dict[str, str] = {}
    for key, value in document.items():
        role = _BY_KEY.get(str(key))
        if role is None:
            raise CatalogError(f"{source}: unknown key {key!r}; the catalog knows "
                               f"{', '.join(ROLE_KEYS)}")
        entries[role.key] = _check_reference(role, value, source)
    return entries


def _registry(environ: Mapping[str, str]) -> str:
    registry = environ.get(REGISTRY_ENV, "").strip().rstrip("/")
    if registry and not re.fullmatch(REGISTRY_RE, registry):
        raise CatalogError(f"{REGISTRY_ENV}={registry!r}: want host[:port][/path], e.g. "
                           "mirror.example.internal:5000/team (no scheme, lower case)")
    return registry


def _pull_secrets(environ: Mapping[str, str]) -> tuple[str, ...]:
    names: list[str] = []
    for raw in environ.get(PULL_SECRETS_ENV, "").split(","):
        name = raw.strip()
        if not name:
            continue
        if len(name) > 253 or not re.fullmatch(DNS_SUBDOMAIN_RE, name):
            raise CatalogError(f"{PULL_SECRETS_ENV}: {name!r} is not a Secret name")
        if name not in names:
            names.append(name)
    return tuple(names)


def from_settings(
    environ: Mapping[str, str], entries: Mapping[str, str] | None = None
) -> ImageCatalog:
    """The catalog from environment settings and the file's (already parsed) entries."""
    registry = _registry(environ)
    chosen = {role.field: with_registry((entries or {}).get(role.key, role.default), registry)
              for role in ROLES}
    pinned = "operator" in (entries or {})
    operator = environ.get(OPERATOR_IMAGE_ENV, "").strip()
    if operator:
        if not re.fullmatch(IMAGE_RE, operator):
            raise CatalogError(f"{OPERATOR_IMAGE_ENV}={operator!r} is not an image reference")
        # As written: it names the image the operator itself runs.
        chosen["operator"] = operator
        pinned = True
    return ImageCatalog(**chosen, image_pull_secrets=_pull_secrets(environ),
                        registry=registry, operator_pinned=pinned)


def load(environ: Mapping[str, str]) -> ImageCatalog:
    """Read the settings (and the catalog file they name)."""
    path = environ.get(CATALOG_ENV, "").strip()
    entries: dict[str, str] = {}
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise CatalogError(f"{CATALOG_ENV}={path}: cannot read: {error.strerror}") from None
        entries = parse_catalog_file(text, f"{CATALOG_ENV}={path}")
    return from_settings(environ, entries)


# --------------------------------------------------------------------------- the process's catalog

_lock = threading.Lock()
_current: ImageCatalog | None = None


def current() -> ImageCatalog:
    """The process's catalog, loaded from ``os.environ`` on first use."""
    global _current
    with _lock:
        if _current is None:
            _current = load(os.environ)
        return _current


def install(catalog: ImageCatalog | None) -> ImageCatalog | None:
    """Make ``catalog`` the process's (None: load again on next use); returns the previous one."""
    global _current
    with _lock:
        previous, _current = _current, catalog
        return previous


# --------------------------------------------------------------------------- the operator's own pod


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str


def own_pod(environ: Mapping[str, str]) -> PodRef | None:
    """The operator's pod, when the Deployment told it its name (downward API)."""
    name = environ.get(POD_NAME_ENV, "").strip()
    namespace = environ.get(POD_NAMESPACE_ENV, "").strip()
    return PodRef(namespace, name) if name and namespace else None


def container_image(pod: Mapping[str, Any], container: str) -> str | None:
    """The image a pod's container was created from, as its spec names it.

    The spec, not ``status.containerStatuses``: the runtime reports a
    normalised reference there (with its default registry spelled out), and
    the runner Jobs must name the image exactly as the Deployment does.
    """
    for entry in pod.get("spec", {}).get("containers", []):
        if entry.get("name") == container and entry.get("image"):
            return str(entry["image"])
    return None
