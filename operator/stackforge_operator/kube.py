"""The only module that talks to the Kubernetes API.

One kubernetes ``ApiClient`` serves the whole process; kopf authenticates with
the same credentials through :func:`connection_info`.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, NamedTuple, Self

import httpx
import kopf
import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError
from kubernetes.dynamic.resource import Resource
from kubernetes.watch.watch import iter_resp_lines

from stackforge_operator import FIELD_MANAGER, watch_cache
from stackforge_operator.retry_after import retry_after_seconds

Obj = dict[str, Any]
logger = logging.getLogger(__name__)

_lock = threading.Lock()
_api_client: client.ApiClient | None = None
_dynamic: DynamicClient | None = None
_watch_client: client.ApiClient | None = None


def load_configuration() -> client.Configuration:
    """In-cluster credentials inside a pod, else the kubeconfig named by $KUBECONFIG.

    $KUBECONFIG is read now, not when the kubernetes package was imported, so
    a process (or a test) that sets it late still gets the cluster it named.
    """
    configuration = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG") or None,
            client_configuration=configuration,
        )
    configuration.retries = RetryNoTimedOutRead(total=3)
    return configuration


class RetryNoTimedOutRead(urllib3.util.Retry):
    """urllib3's retries, less the retry of a read that timed out.

    urllib3 repeats a GET (and PUT, DELETE) whose answer did not come within the
    read timeout, up to three times: with :data:`REQUEST_TIMEOUT` a read of a
    silent API server held its reconcile for 4 x 90 s instead of 90. A timed-out
    read now ends at once, and the caller's own retry (kopf's, the work queue's)
    decides. A pooled connection the server had closed is still retried: that
    error comes before the server saw the request again.
    """

    def increment(self, method: str | None = None, url: str | None = None,
                  response: Any = None, error: Exception | None = None,
                  _pool: Any = None, _stacktrace: Any = None) -> Self:
        if isinstance(error, urllib3.exceptions.ReadTimeoutError):
            raise error.with_traceback(_stacktrace)
        return super().increment(method, url, response, error, _pool, _stacktrace)


def api_client() -> client.ApiClient:
    with _lock:
        return api_client_unlocked()


def reset_clients() -> None:
    """Forget the process's clients, so the next call reads the credentials afresh."""
    global _api_client, _dynamic, _watch_client
    with _lock:
        _api_client = None
        _dynamic = None
        _watch_client = None


def _authorization(configuration: client.Configuration) -> str | None:
    """The Authorization header of the credentials: where the kubernetes client
    keeps a token, a kubeconfig's or in-cluster's."""
    header: str | None = configuration.get_api_key_with_prefix(
        "BearerToken") or configuration.get_api_key_with_prefix("authorization")
    return header


def connection_info(configuration: client.Configuration) -> kopf.ConnectionInfo:
    """kopf's view of the same credentials the kubernetes client uses."""
    scheme, _, token = (_authorization(configuration) or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


# -- generic object access (DynamicClient: any kind, CRDs included) ---------------

# Statuses worth retrying: conflict, throttling and server trouble.
_RETRYABLE = {409, 429, 500, 502, 503, 504}
# The object itself refused (malformed, or invalid for its kind): the same object
# gets the same answer, so only a changed object can succeed.
_REFUSING = {400, 422}
# A retry waits this long, and longer when the API server (or a proxy in front of
# it) says so in Retry-After (the work queue spreads long delays up to a tenth
# earlier): the priority-and-fairness filter answers 429 with it, and throttled
# requests sent again at once only add to the load.
RETRY_SECONDS = 5.0
# A Retry-After beyond this is not believed (a misconfigured proxy's).
RETRY_AFTER_MAX_SECONDS = 600.0


class Forbidden(kopf.TemporaryError):
    """403: RBAC, or an admission webhook that denies (Gatekeeper, Kyverno answer
    403). A person fixes it; the operator retries slowly. A caller that applies
    many objects reports it for the one refused and goes on with the others."""


class Refused(kopf.TemporaryError):
    """The API server refuses the object sent (400, 422), not the moment.

    A TemporaryError still, so a caller that knows no better retries; one that
    derives the object from a user's spec reports it instead: retrying the same
    object can only get the same answer."""


def dynamic() -> DynamicClient:
    global _dynamic
    with _lock:
        if _dynamic is None:
            _dynamic = DynamicClient(api_client_unlocked())
        return _dynamic


# (connect, read) seconds of every request of the shared client that names no
# timeout of its own. The client has no default: a request in flight when the
# API server's machine died (or its address moved) waited for the kernel to give
# up on the connection, about 15 minutes, its reconcile stuck meanwhile until the
# liveness probe restarted the operator. Read is the wait between bytes, not for
# the whole answer: a long LIST that keeps coming is not cut. Longer than the API
# server's own limit on a request (60 s by default): a slow write, queued by its
# priority and fairness, gets the server's definite answer rather than a cut
# connection that leaves whether it was done unknown.
REQUEST_TIMEOUT = (10.0, 90.0)


class _TimedApiClient(client.ApiClient):
    """The kubernetes client with :data:`REQUEST_TIMEOUT` as its default."""

    def call_api(self, method: Any, url: Any, header_params: Any = None, body: Any = None,
                 post_params: Any = None, _request_timeout: Any = None) -> Any:
        return super().call_api(
            method, url, header_params, body, post_params,
            REQUEST_TIMEOUT if _request_timeout is None else _request_timeout)


def api_client_unlocked() -> client.ApiClient:
    global _api_client
    if _api_client is None:
        _api_client = _TimedApiClient(load_configuration())
    return _api_client


@contextmanager
def translated_errors(action: str) -> Iterator[None]:
    """Turn API errors into kopf's retry semantics, with a message that says what failed."""
    try:
        yield
    except ApiException as error:
        reason = _reason(error)
        if error.status in _REFUSING:
            raise Refused(f"{action}: {reason}", delay=5) from error
        if error.status in _RETRYABLE:
            raise kopf.TemporaryError(f"{action}: {reason}",
                                      delay=_retry_delay(error)) from error
        if error.status == 403:
            # RBAC is fixed by a human, but then the operator must recover by
            # itself: retry, slowly.
            raise Forbidden(f"{action}: forbidden: {reason}", delay=60) from error
        raise
    except urllib3.exceptions.HTTPError as error:
        # The connection broke (reset, closed mid-answer, retries used up): the
        # API server or the way to it is away for a while, not a bug to trace.
        raise kopf.TemporaryError(f"{action}: the connection to the API server failed: "
                                  f"{type(error).__name__}", delay=RETRY_SECONDS) from error


def _retry_delay(error: ApiException) -> float:
    headers = error.headers or {}
    asked = retry_after_seconds(headers.get("Retry-After")) \
        if error.status in (429, 503) else None
    return RETRY_SECONDS if asked is None else max(RETRY_SECONDS,
                                                  min(asked, RETRY_AFTER_MAX_SECONDS))


def answer_lost(error: BaseException) -> bool:
    """The connection broke after the request left: it may have been carried out."""
    return isinstance(error.__cause__, urllib3.exceptions.HTTPError)


def _reason(error: ApiException) -> str:
    try:
        body = json.loads(error.body or "{}")
    except ValueError:
        return str(error.reason)
    return str(body.get("message") or error.reason)


def _resource(api_version: str, kind: str) -> Resource:
    found: Resource = dynamic().resources.get(api_version=api_version, kind=kind)
    return found


def _as_dicts(_client: DynamicClient, data: Obj) -> Obj:
    """The response as the API server sent it, parsed once.

    The dynamic client's default wraps every nested field in an object, which
    ``to_dict()`` then unwraps again: a fifth of the operator's CPU per
    reconcile went to that round trip. Like the wrapper, the items of a list
    get the ``apiVersion`` and ``kind`` the server leaves out of them.
    """
    return _with_item_kinds(data)


def _with_item_kinds(data: Obj) -> Obj:
    """A parsed list, its items given the ``apiVersion`` and ``kind`` the server
    leaves out of them."""
    kind = str(data.get("kind", ""))
    if kind.endswith("List") and "items" in data:
        data["items"] = data["items"] or []
        for item in data["items"]:
            item.setdefault("apiVersion", data.get("apiVersion"))
            item.setdefault("kind", kind[: -len("List")])
    return data


# Within one_read_per_secret(): each Secret read so far, by (namespace, name).
_secrets_read: ContextVar[dict[tuple[str | None, str], Obj | None] | None] = ContextVar(
    "secrets_read", default=None)


@contextmanager
def one_read_per_secret() -> Iterator[None]:
    """Within it, a Secret the watch caches do not hold (a spec's S3 keys, CA bundle,
    cipher passphrase) is read from the API server once, and its later reads get
    that answer.

    For one reconcile pass: one view of its inputs. A drill's first pass read its
    policy's Secrets seven times (checked, then copied), each request before the
    scratch pod's start and so part of the drill's RTO."""
    token = _secrets_read.set({})
    try:
        yield
    finally:
        _secrets_read.reset(token)


def _forget_secret(api_version: str, kind: str, name: str, namespace: str | None) -> None:
    read = _secrets_read.get()
    if read is not None and api_version == "v1" and kind == "Secret":
        read.pop((namespace, name), None)


def get(api_version: str, kind: str, name: str, namespace: str | None = None, *,
        fresh: bool = False) -> Obj | None:
    """The object, or None when it does not exist; from the watch cache when it knows
    (``fresh``: from the API server, for a read that must follow a write)."""
    if not fresh:
        cached = watch_cache.CACHES.get(api_version, kind, name, namespace)
        if not isinstance(cached, watch_cache.Unknown):
            return cached
    read = _secrets_read.get() if api_version == "v1" and kind == "Secret" else None
    if read is not None and not fresh and (namespace, name) in read:
        return copy.deepcopy(read[(namespace, name)])
    with translated_errors(f"reading {kind} {namespace or ''}/{name}"):
        try:
            found: Obj | None = _resource(api_version, kind).get(
                name=name, namespace=namespace, serializer=_as_dicts)
        except NotFoundError:
            found = None
    if read is not None:
        read[(namespace, name)] = copy.deepcopy(found)
    return found


def pod_log(namespace: str, pod: str, container: str, tail_lines: int) -> str:
    """A container's last lines (empty when it has none yet)."""
    with translated_errors(f"reading the log of {namespace}/{pod} {container}"):
        try:
            text: Any = client.CoreV1Api(api_client()).read_namespaced_pod_log(
                pod, namespace, container=container, tail_lines=tail_lines)
        except ApiException as error:
            if error.status in (400, 404):  # not started yet, or gone
                return ""
            raise
        return str(text)


def list_pod_metrics(namespace: str) -> list[Obj] | None:
    """The metrics API's PodMetrics of a namespace; None when the cluster serves no
    metrics API. Through its plain path, not the dynamic client: a kind missing
    from discovery makes that client rebuild its shared cache, which races the
    other reconcile threads reading it (seen: KeyError inside its discovery)."""
    with translated_errors(f"listing PodMetrics in {namespace}"):
        try:
            found: Any = client.CustomObjectsApi(api_client()).list_namespaced_custom_object(
                "metrics.k8s.io", "v1beta1", namespace, "pods")
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return list(found.get("items") or [])


class KubeletStatsError(Exception):
    """A kubelet's statistics could not be read; the message says why, for status."""


def _kubelet_tls(configuration: Any, *, ca_file: str | None,
                 insecure: bool) -> ssl.SSLContext:
    # No client certificate: the kubelet is shown the reader's token only (a
    # certificate of the operator's would be taken for the operator's identity).
    if insecure:
        tls = ssl.create_default_context()
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    else:
        tls = ssl.create_default_context(cafile=ca_file or configuration.ssl_ca_cert)
    return tls


class ServiceAccountToken(NamedTuple):
    token: str
    expires: datetime


def service_account_token(namespace: str, name: str, seconds: int) -> ServiceAccountToken:
    """A new token of the ServiceAccount ``namespace/name`` (TokenRequest), for the
    API server's own audience, valid ``seconds`` (or what the server grants)."""
    body = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds))
    what = f"requesting a token of ServiceAccount {namespace}/{name}"
    with translated_errors(what):
        try:
            granted: Any = client.CoreV1Api(api_client()).create_namespaced_service_account_token(
                name, namespace, body)
        except ApiException as error:
            if error.status == 404:
                # Installed without it (an older manifest): a person adds it.
                raise kopf.TemporaryError(f"{what}: it does not exist", delay=60) from error
            raise
    return ServiceAccountToken(granted.status.token, granted.status.expiration_timestamp)


def kubelet_stats_summary(node: Obj, *, token: Callable[[], str], ca_file: str | None,
                          insecure: bool, timeout: float) -> Obj:
    """The kubelet's ``/stats/summary`` of ``node`` (a Node object), asked of the
    kubelet itself at the address and port its Node status names, with the token
    ``token()`` gives once the node names them (the kubelet reader's,
    rbac.KUBELET_READER: never the operator's own, which the node would hold
    from then on): the kubelet authorises ``nodes/stats``
    through the API server. Not through the API server's node proxy, which would
    need ``nodes/proxy``, a right that reaches every kubelet endpoint (exec
    included). The kubelet's serving certificate is checked against ``ca_file``,
    else the cluster's CA (kubelets with certificates the cluster signed)."""
    name = node["metadata"]["name"]
    addresses = (node.get("status") or {}).get("addresses") or []
    address = next((a["address"] for a in addresses if a.get("type") == "InternalIP"), None)
    port = (((node.get("status") or {}).get("daemonEndpoints") or {})
            .get("kubeletEndpoint") or {}).get("Port")
    if not address or not port:
        raise KubeletStatsError(f"node {name} names no kubelet address and port")
    configuration = api_client().configuration
    try:
        tls = _kubelet_tls(configuration, ca_file=ca_file, insecure=insecure)
    except (OSError, ssl.SSLError) as error:
        # A CA file not mounted, or not PEM: said on every tenant's status, which
        # raised before it was written (retried for ever, its every field frozen).
        raise KubeletStatsError(
            f"the TLS set-up for the kubelet of node {name} failed (CA file "
            f"{ca_file or configuration.ssl_ca_cert}): {type(error).__name__}: "
            f"{str(error)[:120]}") from error
    headers = {"Authorization": f"Bearer {token()}"}
    host = f"[{address}]" if ":" in address else address
    try:
        response = httpx.get(f"https://{host}:{port}/stats/summary", headers=headers,
                             verify=tls, timeout=timeout)
    except httpx.HTTPError as error:
        raise KubeletStatsError(f"the kubelet of node {name} did not answer: "
                                f"{type(error).__name__}: {str(error)[:120]}") from error
    if response.status_code != 200:
        raise KubeletStatsError(f"the kubelet of node {name} answered "
                                f"{response.status_code}: {response.text[:120]}")
    try:
        summary: Obj = response.json()
    except ValueError as error:
        raise KubeletStatsError(f"the kubelet of node {name} answered no JSON") from error
    return summary


def list_objects(
    api_version: str, kind: str, *, namespace: str | None = None, label_selector: str = "",
    field_selector: str = "",
) -> list[Obj]:
    cached = watch_cache.CACHES.list(api_version, kind, namespace, label_selector, field_selector)
    if not isinstance(cached, watch_cache.Unknown):
        return cached
    with translated_errors(f"listing {kind}"):
        found: Obj = _resource(api_version, kind).get(
            namespace=namespace, label_selector=label_selector, field_selector=field_selector,
            serializer=_as_dicts)
        items: list[Obj] = found["items"]
        return items


def apply(manifest: Obj, *, field_manager: str = FIELD_MANAGER) -> Obj:
    """Server-side apply; forcing, because the operator is the authority on its fields."""
    meta = manifest["metadata"]
    what = f"applying {manifest['kind']} {meta.get('namespace', '')}/{meta['name']}"
    with translated_errors(what):
        applied = dynamic().server_side_apply(
            _resource(manifest["apiVersion"], manifest["kind"]),
            body=apply_body(manifest),
            name=meta["name"],
            namespace=meta.get("namespace"),
            field_manager=field_manager,
            force_conflicts=True,
            serializer=_as_dicts,
        )
        result: Obj = applied
    # The next reconcile reads the cache, which the watch may not have updated yet.
    watch_cache.CACHES.written(result)
    _forget_secret(manifest["apiVersion"], manifest["kind"], meta["name"], meta.get("namespace"))
    return result


def create(manifest: Obj, *, field_manager: str = FIELD_MANAGER) -> Obj | None:
    """Create ``manifest``: None when an object of its name exists already (409),
    which an apply would have taken over."""
    meta = manifest["metadata"]
    what = f"creating {manifest['kind']} {meta.get('namespace', '')}/{meta['name']}"
    with translated_errors(what):
        try:
            created: Obj = dynamic().create(
                _resource(manifest["apiVersion"], manifest["kind"]), body=manifest,
                namespace=meta.get("namespace"), field_manager=field_manager,
                serializer=_as_dicts)
        except ApiException as error:
            if error.status == 409:
                return None
            raise
    watch_cache.CACHES.written(created)
    return created


# Past printable ASCII: DEL and everything beyond it.
_BEYOND_ASCII = re.compile(r"[^\x00-\x7e]")


def _yaml_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\U{code:08x}" if code > 0xFFFF else f"\\u{code:04x}"


def apply_body(manifest: Obj) -> bytes:
    """``manifest`` as the YAML an apply patch is (JSON is YAML), every character
    past printable ASCII escaped the way YAML reads it.

    The API server parses apply patches as YAML, whose parser refuses the UTF-16
    surrogate pairs JSON writes for characters beyond U+FFFF (an emoji in an
    app's env value: "found invalid Unicode character escape code"); YAML spells
    those \\UXXXXXXXX. Raw UTF-8 is no way out either: tried on the API server,
    a raw NEL came back as a space, and a raw DEL or C1 control was refused.
    With ensure_ascii=False, every such character sits inside a string literal,
    never in an escape, so each can be replaced on its own."""
    return _BEYOND_ASCII.sub(_yaml_escape, json.dumps(manifest, ensure_ascii=False)).encode()


def delete(api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
    """Delete in the background; False when it was already gone."""
    _forget_secret(api_version, kind, name, namespace)
    with translated_errors(f"deleting {kind} {namespace or ''}/{name}"):
        try:
            _resource(api_version, kind).delete(
                name=name, namespace=namespace, propagation_policy="Background"
            )
        except NotFoundError:
            return False
        return True


def _merge_patch(resource: Resource, name: str, namespace: str | None, body: Obj,
                 action: str) -> Obj:
    with translated_errors(action):
        patched = resource.patch(
            body=body,
            name=name,
            namespace=namespace,
            content_type="application/merge-patch+json",
            serializer=_as_dicts,
        )
        result: Obj = patched
    watch_cache.CACHES.written(result)
    return result


def annotate(api_version: str, kind: str, name: str, namespace: str | None,
             annotations: Mapping[str, str | None]) -> Obj:
    """Merge-patch the object's annotations (None removes one)."""
    return _merge_patch(_resource(api_version, kind), name, namespace,
                        {"metadata": {"annotations": dict(annotations)}},
                        f"annotating {kind} {namespace or ''}/{name}")


def patch_status(
    api_version: str, kind: str, name: str, namespace: str | None, status: Obj,
    *, resource_version: str | None = None,
) -> Obj:
    """Merge-patch the status subresource (lists inside are replaced whole).

    With ``resource_version`` the write happens only if the object is still at
    that version (409, i.e. a TemporaryError, otherwise): for status that must
    never be written from a stale read.
    """
    body: Obj = {"status": status}
    if resource_version is not None:
        body["metadata"] = {"resourceVersion": resource_version}
    return _merge_patch(_resource(api_version, kind).subresources["status"], name, namespace,
                        body, f"writing status of {kind} {namespace or ''}/{name}")


def record_event(involved: Obj, event_type: str, reason: str, message: str) -> None:
    """Post a core/v1 Event about ``involved``; losing one must not fail a reconcile."""
    meta = involved["metadata"]
    # Events of cluster-scoped objects conventionally live in "default".
    namespace = meta.get("namespace") or "default"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": involved["apiVersion"],
            "kind": involved["kind"],
            "name": meta["name"],
            "namespace": meta.get("namespace") or "",
            "uid": meta.get("uid", ""),
        },
        "type": event_type,
        "reason": reason,
        "message": message[:1024],
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "source": {"component": FIELD_MANAGER},
        "reportingComponent": FIELD_MANAGER,
        "reportingInstance": socket.gethostname(),
    }
    try:
        _resource("v1", "Event").create(body=body, namespace=namespace)
    except ApiException as error:
        logger.warning("could not post event %s for %s: %s", reason, meta["name"], _reason(error))
    except urllib3.exceptions.HTTPError as error:
        # Also a broken connection: what follows an Event (the notifications of the
        # status just written) must still happen. (Seen with connections reset.)
        logger.warning("could not post event %s for %s: %s", reason, meta["name"],
                       type(error).__name__)


# --- LIST and WATCH for the watch caches (informer.py) ------------------------------


class WatchExpiredError(Exception):
    """The API server no longer holds the resourceVersion a watch asked for (410 Gone):
    LIST again."""


# Connections of the informers' client: each watch holds one for minutes.
_WATCH_CONNECTIONS = 32


def watch_client() -> client.ApiClient:
    """The informers' client: apart from the shared one, whose connections the
    reconciles need, and with room for every watch at once (one pool, not one
    client and TLS context per informer)."""
    global _watch_client
    with _lock:
        if _watch_client is None:
            configuration = copy.deepcopy(api_client_unlocked().configuration)
            configuration.connection_pool_maxsize = _WATCH_CONNECTIONS
            _watch_client = client.ApiClient(configuration)
        return _watch_client


def collection_path(api_version: str, kind: str) -> str:
    """The URL path of every object of a kind, across namespaces."""
    return str(_resource(api_version, kind).path())


# Metadata only (as client-go's metadata informers ask): no data, no spec.
_METADATA = "application/json;as={};g=meta.k8s.io;v=v1"


def _streamed_get(api: client.ApiClient, path: str, query: list[tuple[str, Any]],
                  read_timeout: float, accept: str = "application/json") -> Any:
    request = api.param_serialize("GET", path, query_params=query,
                                  header_params={"Accept": accept},
                                  auth_settings=["BearerToken"])
    answer = api.call_api(*request, _request_timeout=(10, read_timeout))
    if not 200 <= answer.status <= 299:
        answer.read()
        api.response_deserialize(answer, {})  # raises the ApiException
    return answer.response


def _same(obj: Obj) -> Obj:
    return obj


def list_collection(api: client.ApiClient, path: str, label_selector: str,
                    page: int = 500, *, metadata_only: bool = False,
                    keep: Callable[[Obj], Any] = _same) -> tuple[list[Any], str]:
    """Every object of the collection (in pages), each as ``keep`` makes it as its page
    arrives, and the resourceVersion to watch from; ``metadata_only``: their metadata
    alone. A watch cache keeps each object packed: parsing a whole kind before
    packing any (8,000 Services at 1,000 tenants) added to a restarted operator's
    memory (docs/benchmarks.md)."""
    accept = _METADATA.format("PartialObjectMetadataList") if metadata_only \
        else "application/json"
    items: list[Any] = []
    token = ""
    while True:
        query: list[tuple[str, Any]] = [("limit", page)]
        if label_selector:
            query.append(("labelSelector", label_selector))
        if token:
            query.append(("continue", token))
        data = _with_item_kinds(json.loads(_streamed_get(api, path, query, 60, accept).data))
        items += [keep(item) for item in data.get("items") or []]
        token = str((data.get("metadata") or {}).get("continue") or "")
        if not token:
            return items, str(data["metadata"]["resourceVersion"])


def watch_collection(api: client.ApiClient, path: str, label_selector: str,
                     resource_version: str, timeout_seconds: int, *,
                     metadata_only: bool = False) -> Iterator[tuple[str, Obj]]:
    """(type, object) of each change after ``resource_version``, BOOKMARKs included,
    until the server ends the watch (after ``timeout_seconds``); ``metadata_only``:
    each object's metadata alone."""
    accept = _METADATA.format("PartialObjectMetadata") if metadata_only \
        else "application/json"
    query: list[tuple[str, Any]] = [
        ("watch", "true"), ("allowWatchBookmarks", "true"),
        ("resourceVersion", resource_version), ("timeoutSeconds", timeout_seconds)]
    if label_selector:
        query.append(("labelSelector", label_selector))
    try:
        response = _streamed_get(api, path, query, timeout_seconds + 30, accept)
    except ApiException as error:
        # Some versions answer a compacted resourceVersion at once with HTTP 410.
        if error.status == 410:
            raise WatchExpiredError(_reason(error)) from error
        raise
    try:
        for line in iter_resp_lines(response):
            event = json.loads(line)
            if event.get("type") == "ERROR":
                status = event.get("object") or {}
                if status.get("code") == 410:
                    raise WatchExpiredError(str(status.get("message") or "expired"))
                raise ApiException(status=status.get("code"), reason=status.get("message"))
            yield str(event["type"]), event["object"]
    finally:
        # Closed, not only released: a watch left half-read must not go back to the
        # pool as if it were idle.
        response.close()
        response.release_conn()
