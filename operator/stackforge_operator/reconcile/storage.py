"""A BackupPolicy's object storage as the operator reaches it: its Secrets, its S3 client.

The operator reads the bucket (BackupPolicy status, retention) with the
policy's own credentials and CA bundle, never its own: a policy gets exactly
the access its Secrets give. Every Secret is read in the policy's namespace.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, PartialCredentialsError

from stackforge_operator import kube, status
from stackforge_operator.backup.store import BackupStore, StoreConfig
from stackforge_operator.builders import credentials
from stackforge_operator.builders.backup_network import url_host_port
from stackforge_operator.config import AMBIENT_S3_IDENTITY_ENV, ambient_s3_identity_allowed
from stackforge_operator.models.backup import DEFAULT_REGION, ObjectStorage

PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True)
class SecretKeys:
    """Keys a spec field needs from one Secret."""

    field: str  # the spec field naming the Secret, for the message
    secret: str
    keys: tuple[str, ...]
    # Whether a key without text is EmptySecretKey here; not for a CA, whose own
    # check says more (ca_problems: no PEM certificate in it).
    text: bool = True


def storage_secrets(storage: ObjectStorage) -> list[SecretKeys]:
    """The Secrets ``spec.storage`` names, with the keys read from each."""
    wanted = []
    creds = storage.credentials_secret_ref
    if creds is not None:
        wanted.append(SecretKeys("spec.storage.credentialsSecretRef", creds.name,
                                 (creds.access_key_id_key, creds.secret_access_key_key)))
    if storage.endpoint_ca is not None:
        wanted.append(SecretKeys("spec.storage.endpointCA", storage.endpoint_ca.name,
                                 (storage.endpoint_ca.key,), text=False))
    return wanted


def secret_problems(wanted: Sequence[SecretKeys], namespace: str) -> list[status.Problem]:
    """MissingSecret / MissingSecretKey for each Secret or key that is not there, and
    EmptySecretKey for a key that holds no text (empty, blank, or not UTF-8): an
    S3 client given no keys takes the operator's own identity from its
    environment, against a bucket the policy names."""
    problems = []
    for need in wanted:
        secret = kube.get("v1", "Secret", need.secret, namespace)
        if secret is None:
            problems.append(status.Problem(
                "MissingSecret", f"{need.field}: Secret {namespace}/{need.secret} does not exist"))
            continue
        absent = [k for k in need.keys if k not in (secret.get("data") or {})]
        if absent:
            problems.append(status.Problem(
                "MissingSecretKey",
                f"{need.field}: Secret {namespace}/{need.secret} lacks {', '.join(absent)}"))
            continue
        text = credentials.decode(secret)
        empty = [k for k in need.keys if not text.get(k, "").strip()]
        if empty and need.text:
            problems.append(status.Problem(
                "EmptySecretKey",
                f"{need.field}: Secret {namespace}/{need.secret} holds no text in "
                f"{', '.join(empty)}"))
    return problems


def ca_problems(storage: ObjectStorage, namespace: str) -> list[status.Problem]:
    """A CA bundle that is there but holds no PEM certificate (checked after presence).

    Caught here, the user reads which key is wrong; caught by TLS, only that
    the endpoint cannot be verified.
    """
    ref = storage.endpoint_ca
    pem = ca_bundle(storage, namespace)
    if ref is None or pem is None or PEM_CERTIFICATE in pem:
        return []
    return [status.Problem(
        "InvalidEndpointCA",
        f"spec.storage.endpointCA: key {ref.key} of Secret {namespace}/{ref.name} holds no "
        "PEM certificate (want one or more '-----BEGIN CERTIFICATE-----' blocks)")]


def storage_problems(storage: ObjectStorage, namespace: str) -> list[status.Problem]:
    """Everything wrong with the identity and the Secrets ``spec.storage`` names."""
    return identity_problems(storage) or secret_problems(
        storage_secrets(storage), namespace) or ca_problems(storage, namespace)


AMBIENT_IDENTITY_REFUSED = (
    "spec.storage.credentialsSecretRef is required: without access keys the operator and "
    "the tenant's pods would use an ambient S3 identity (the operator's, the node's), "
    "one for every tenant, against whatever bucket and prefix a policy names; an "
    f"operator whose every tenant may share it allows that with "
    f"{AMBIENT_S3_IDENTITY_ENV}=allow")


def identity_problems(storage: ObjectStorage) -> list[status.Problem]:
    """CredentialsRequired when ``storage`` names no keys and the operator lends no
    ambient identity (config.ambient_s3_identity_allowed)."""
    if storage.credentials_secret_ref is not None or ambient_s3_identity_allowed():
        return []
    return [status.Problem("CredentialsRequired", AMBIENT_IDENTITY_REFUSED)]


class AmbientIdentityRefusedError(BotoCoreError):
    """A bucket asked for with no keys while the operator lends no ambient identity."""

    fmt = AMBIENT_IDENTITY_REFUSED


def ca_bundle(storage: ObjectStorage, namespace: str) -> str | None:
    """The PEM text of ``spec.storage.endpointCA``; None when unset or not (yet) there."""
    ref = storage.endpoint_ca
    if ref is None:
        return None
    secret = kube.get("v1", "Secret", ref.name, namespace)
    encoded = ((secret or {}).get("data") or {}).get(ref.key)
    if encoded is None:
        return None
    try:
        return base64.b64decode(str(encoded)).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return ""  # not text: certainly no PEM (ca_problems says so)


@contextmanager
def private_file(data: str) -> Iterator[Path]:
    """``data`` in a file only this process's user can read, removed on exit.

    boto3 takes a CA bundle only as a path, and reads it whenever it opens a
    connection: the file must outlive the client's use, no longer.
    """
    with tempfile.TemporaryDirectory(prefix="stackforge-ca-") as directory:  # mode 0700
        path = Path(directory) / "ca.crt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
        yield path


@contextmanager
def policy_store(storage: ObjectStorage, namespace: str) -> Iterator[BackupStore]:
    """The policy's bucket, with the policy's credentials and CA (never the operator's).

    Use it inside ``with``: the CA bundle's file lives as long as the block.
    """
    config = StoreConfig.from_policy(storage, max_attempts=2, connect_timeout=5.0,
                                     read_timeout=30.0)
    access_key = secret_key = None
    creds = storage.credentials_secret_ref
    if creds is None and not ambient_s3_identity_allowed():
        # Never boto3's default chain (the operator's own identity) unless allowed:
        # the reconciles say CredentialsRequired first; this is the last guard.
        raise AmbientIdentityRefusedError()
    if creds is not None:
        data = credentials.decode(kube.get("v1", "Secret", creds.name, namespace) or {})
        access_key = data.get(creds.access_key_id_key, "").strip() or None
        secret_key = data.get(creds.secret_access_key_key, "").strip() or None
        if access_key is None or secret_key is None:
            # Never the operator's own identity (boto3's default chain) for a policy
            # that names keys: reported as the bucket unreadable, and why.
            raise PartialCredentialsError(
                provider=f"Secret {namespace}/{creds.name}",
                cred_var=creds.access_key_id_key if access_key is None
                else creds.secret_access_key_key)
    pem = ca_bundle(storage, namespace)
    with _maybe_file(pem) as ca_path:
        session = boto3.session.Session(aws_access_key_id=access_key,
                                        aws_secret_access_key=secret_key)
        client = session.client(
            "s3",
            endpoint_url=config.endpoint,
            region_name=config.region or DEFAULT_REGION,
            # None: botocore's default (the system's CAs, or the operator's AWS_CA_BUNDLE).
            verify=str(ca_path) if ca_path else None,
            config=Config(
                s3={"addressing_style": "path"} if config.force_path_style else {},
                retries={"max_attempts": config.max_attempts, "mode": "standard"},
                connect_timeout=config.connect_timeout,
                read_timeout=config.read_timeout,
            ),
        )
        yield BackupStore(config, client=client)


@contextmanager
def _maybe_file(data: str | None) -> Iterator[Path | None]:
    if data is None:
        yield None
        return
    with private_file(data) as path:
        yield path


# Host names resolved, kept for RESOLVE_TTL_SECONDS: a BackupPolicy reconciles at
# every resync, and a lookup blocks its handler. A failed lookup keeps the last
# answer: a resolver's hiccup must not narrow the runners' egress policy (and
# widen it again a resync later).
RESOLVE_TTL_SECONDS = 60.0
_resolved: dict[tuple[str, int], tuple[float, list[tuple[str, int]]]] = {}


def resolve(host: str, port: int, *,
            lookup: Callable[..., Sequence[tuple[Any, ...]]] = socket.getaddrinfo,
            clock: Callable[[], float] = time.monotonic) -> list[tuple[str, int]]:
    """The addresses ``host`` resolves to, cached as said above."""
    now = clock()
    cached = _resolved.get((host, port))
    if cached is not None and now - cached[0] < RESOLVE_TTL_SECONDS:
        return cached[1]
    try:
        found = lookup(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return cached[1] if cached is not None else []
    addresses = sorted({(str(info[4][0]), port) for info in found})
    _resolved[(host, port)] = (now, addresses)
    return addresses


# <service>.<namespace>.svc, as the cluster's DNS serves it (with or without the
# cluster domain; the default one only, which is what a pod's search list has).
_SERVICE_HOST = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)"
                           r"\.svc(\.cluster\.local)?\.?$")
# A Service's endpoints are kept for a few seconds only: they come from the API,
# not a resolver, and they move (a selectorless Service pointed elsewhere). Until
# the egress policy follows, connections to the new address are dropped: a
# segment's push then fails after pgBackRest's minute (seen on the real node,
# where the minute of RESOLVE_TTL_SECONDS held the old endpoint that long).
BACKENDS_TTL_SECONDS = 5.0
_backends: dict[tuple[str, int], tuple[float, list[tuple[str, int]]]] = {}


def service_backends(host: str, port: int, *,
                     clock: Callable[[], float] = time.monotonic) -> list[tuple[str, int]]:
    """For a host name that is a cluster Service, the addresses and ports its
    endpoints serve ``port`` at (cached for BACKENDS_TTL_SECONDS).

    NetworkPolicies are matched after the Service's address is translated to
    an endpoint's (kube-router, Cilium, Calico and kube-network-policies all
    do), so a pod allowed only the Service's cluster IP and port is refused: an
    S3 server behind a Service without a selector (outside the pod network)
    needs its endpoints named. Endpoints that are pods are covered anyway.
    """
    match = _SERVICE_HOST.match(host)
    if match is None:
        return []
    name, namespace = match.group(1), match.group(3)
    now = clock()
    cached = _backends.get((host, port))
    if cached is not None and now - cached[0] < BACKENDS_TTL_SECONDS:
        return cached[1]
    service = kube.get("v1", "Service", name, namespace)
    slices = kube.list_objects("discovery.k8s.io/v1", "EndpointSlice", namespace=namespace,
                               label_selector=f"kubernetes.io/service-name={name}"
                               ) if service is not None else []
    found = backends(service, slices, port)
    _backends[(host, port)] = (now, found)
    return found


def backends(service: Mapping[str, Any] | None, slices: Sequence[Mapping[str, Any]],
             port: int) -> list[tuple[str, int]]:
    """(address, port) of every endpoint serving the Service's ``port``, from its
    EndpointSlices (an endpoint port is matched to the Service's by name)."""
    ports = [p for p in ((service or {}).get("spec") or {}).get("ports") or []
             if p.get("port") == port]
    if not ports:
        return []
    port_name = ports[0].get("name") or ""
    found: set[tuple[str, int]] = set()
    for piece in slices:
        for served in piece.get("ports") or []:
            if (served.get("name") or "") != port_name or not served.get("port"):
                continue
            for endpoint in piece.get("endpoints") or []:
                found.update((str(address), int(served["port"]))
                             for address in endpoint.get("addresses") or [])
    return sorted(found)


def endpoint_addresses(endpoint: str | None) -> list[tuple[str, int]]:
    """The addresses and ports a storage endpoint URL is reached at, for a NetworkPolicy.

    An IP literal is taken as it is; a host name is resolved by the operator, in
    the cluster (at most once a minute per name, the last answer kept while a
    lookup fails), and when it names a cluster Service its endpoints come too,
    each with the port it serves on (:func:`service_backends`). A name that
    never resolved gives nothing: the pods then reach public addresses only
    (builders/backup_network.py, builders/drill.py).
    """
    if not endpoint:
        return []
    try:
        host, port = url_host_port(endpoint)
    except ValueError:
        return []
    try:
        return [(str(ipaddress.ip_address(host)), port)]
    except ValueError:
        pass
    return sorted({*resolve(host, port), *service_backends(host, port)})
