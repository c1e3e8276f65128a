from __future__ import annotations

import json
from pathlib import Path

import httpx
import kopf
import pytest
import urllib3
import yaml
from kubernetes import client

from stackforge_operator import kube


def _kubeconfig(path: Path, server: str, token: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server,
                                               "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }))
    return path


def test_kubeconfig_is_read_from_the_environment_at_call_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    first = _kubeconfig(tmp_path / "one", "https://127.0.0.1:1111", "t1")
    second = _kubeconfig(tmp_path / "two", "https://127.0.0.1:2222", "t2")
    monkeypatch.setenv("KUBECONFIG", str(first))
    assert kube.load_configuration().host == "https://127.0.0.1:1111"
    monkeypatch.setenv("KUBECONFIG", str(second))
    assert kube.load_configuration().host == "https://127.0.0.1:2222"


def test_connection_info_carries_bearer_token_and_tls_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "k", "https://h:6443", "tok")))
    info = kube.connection_info(kube.load_configuration())
    assert info.server == "https://h:6443"
    assert (info.scheme, info.token) == ("Bearer", "tok")
    assert info.insecure is True


def test_connection_info_with_client_certificates() -> None:
    configuration = client.Configuration()
    configuration.host = "https://h:6443"
    configuration.cert_file = "/c.crt"
    configuration.key_file = "/c.key"
    configuration.ssl_ca_cert = "/ca.crt"
    info = kube.connection_info(configuration)
    assert (info.certificate_path, info.private_key_path, info.ca_path) == (
        "/c.crt", "/c.key", "/ca.crt"
    )
    assert info.token is None and info.scheme is None


@pytest.mark.parametrize("broken", [
    urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
    urllib3.exceptions.MaxRetryError(None, "/api/v1/namespaces", None),  # type: ignore[arg-type]
])
def test_a_broken_connection_to_the_api_server_is_retried_not_traced(
        broken: Exception) -> None:
    """Seen with the operator's connection reset every 2 s (tests/chaos): each one
    was logged as a bug with its traceback and retried only 30 s later."""
    with pytest.raises(kopf.TemporaryError) as raised, kube.translated_errors("listing Secret"):
        raise broken
    assert raised.value.delay == 5
    assert str(raised.value).startswith(
        "listing Secret: the connection to the API server failed: ")


@pytest.mark.parametrize(("status", "retry_after", "delay"), [
    (429, "30", 30.0),  # the priority-and-fairness filter's answer, or a proxy's
    (503, "Fri, 27 Nov 2099 12:00:30 GMT", kube.RETRY_AFTER_MAX_SECONDS),  # not believed
    (429, "1", kube.RETRY_SECONDS),  # never sooner than the operator's own delay
    (429, None, kube.RETRY_SECONDS),
    (409, "30", kube.RETRY_SECONDS),  # a conflict's Retry-After is no throttle
    (500, "soon", kube.RETRY_SECONDS),
])
def test_a_throttled_request_is_retried_when_the_server_asks(
        status: int, retry_after: str | None, delay: float) -> None:
    """429's Retry-After was ignored: throttled requests came back after 5 s,
    whatever the API server had asked."""
    from kubernetes.client.exceptions import ApiException

    error = ApiException(status=status, reason="Too Many Requests")
    error.headers = urllib3.HTTPHeaderDict(
        {} if retry_after is None else {"retry-after": retry_after})
    with pytest.raises(kopf.TemporaryError) as raised, kube.translated_errors("listing Pod"):
        raise error
    assert raised.value.delay == delay


def test_only_a_broken_connection_leaves_the_outcome_of_a_write_unknown() -> None:
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(kopf.TemporaryError) as lost, kube.translated_errors("writing status"):
        raise urllib3.exceptions.ProtocolError("Connection aborted.")
    assert kube.answer_lost(lost.value)
    with pytest.raises(kopf.TemporaryError) as refused, kube.translated_errors("writing status"):
        raise ApiException(status=409, reason="Conflict")
    assert not kube.answer_lost(refused.value)


def test_an_event_lost_to_a_broken_connection_does_not_fail_the_reconcile(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Seen in the chaos tests: the status (with a new incident) was written, the
    Event after it met a reset, and the notification after that was never sent."""
    class Broken:
        def create(self, **_: object) -> None:
            raise urllib3.exceptions.ProtocolError("Connection aborted.")

    monkeypatch.setattr(kube, "_resource", lambda *_: Broken())
    tenant = {"apiVersion": "stackforge.io/v1alpha1", "kind": "StackForgeTenant",
              "metadata": {"name": "acme", "namespace": "tenant-acme", "uid": "u1"}}
    kube.record_event(tenant, "Warning", "TenantIsolated", "isolated")
    assert "could not post event TenantIsolated for acme: ProtocolError" in caplog.text


def test_an_apply_body_reads_back_as_the_same_object_in_yaml() -> None:
    """PyYAML, like the API server's parser, reads apply patches as YAML 1.1."""
    manifest = {"kind": "ConfigMap", "metadata": {"name": "x"},
                "data": {"emoji": "\U0001F680", "breaks": "a\u0085b\u2028c", "del": "\x7f",
                         "escapes": '"\\ud83d" \\', "plain": "ok", "accents": "東京"}}
    body = kube.apply_body(manifest)
    assert body.isascii()
    assert yaml.safe_load(body) == manifest
    assert json.loads(kube.apply_body({"plain": "ascii only"})) == {"plain": "ascii only"}
    # JSON's own spelling: YAML reads the rocket's surrogate pair as two lone halves
    # (the API server's parser refuses it outright), and raw DEL not at all.
    assert yaml.safe_load(json.dumps(manifest)) != manifest
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(json.dumps(manifest, ensure_ascii=False))


def _node_with_kubelet() -> dict[str, object]:
    return {"metadata": {"name": "n1"},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": 1}}}}


def _no_token() -> str:
    raise AssertionError("a token requested for a kubelet that is not asked")


@pytest.mark.parametrize("content", [None, "not a certificate\n"])
def test_a_kubelet_ca_file_missing_or_not_pem_is_a_stats_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str | None,
) -> None:
    """It raised OSError or SSLError, which volume_stats does not catch: every
    tenant with a claim failed its reconcile before its status was written."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "k", "https://h:6443", "tok")))
    kube.reset_clients()
    ca_file = tmp_path / "kubelet-ca.crt"
    if content is not None:
        ca_file.write_text(content)
    try:
        with pytest.raises(kube.KubeletStatsError, match="TLS set-up for the kubelet of "
                           f"node n1 failed \\(CA file {ca_file}\\)"):
            kube.kubelet_stats_summary(_node_with_kubelet(), token=_no_token, ca_file=str(ca_file),
                                       insecure=False, timeout=1)
    finally:
        kube.reset_clients()


def test_a_kubelet_is_sent_the_token_given_never_the_operators_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "k", "https://h:6443",
                                                     "operators-own")))
    kube.reset_clients()
    sent: list[tuple[str, dict[str, str]]] = []

    def get(url: str, *, headers: dict[str, str], **_: object) -> httpx.Response:
        sent.append((url, headers))
        return httpx.Response(200, json={"node": {"nodeName": "n1"}})

    monkeypatch.setattr(httpx, "get", get)
    try:
        summary = kube.kubelet_stats_summary(_node_with_kubelet(), token=lambda: "reader",
                                             ca_file=None, insecure=True, timeout=1)
    finally:
        kube.reset_clients()
    assert summary == {"node": {"nodeName": "n1"}}
    assert sent == [("https://127.0.0.1:1/stats/summary", {"Authorization": "Bearer reader"})]


class _ScriptedServer:
    """A TCP listener that answers its n-th connection as ``answers[n]`` says:
    None keeps it open and silent, b"" closes it after the request arrived,
    other bytes are sent as the answer."""

    def __init__(self, answers: list[bytes | None]) -> None:
        import socket
        import threading

        self.answers = answers
        self.connections: list[socket.socket] = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)
            index = len(self.connections) - 1
            answer = self.answers[index] if index < len(self.answers) else None
            if answer is None:
                continue
            connection.recv(65536)
            if answer:
                connection.sendall(answer)
            connection.close()

    def close(self) -> None:
        self.listener.close()
        for connection in self.connections:
            connection.close()


def _read_namespace_in_thread(limit: float) -> tuple[list[object], float]:
    import threading
    import time

    outcome: list[object] = []

    def read() -> None:
        try:
            outcome.append(client.CoreV1Api(kube.api_client()).read_namespace("shop"))
        except BaseException as error:
            outcome.append(error)

    reading = threading.Thread(target=read, daemon=True)
    started = time.monotonic()
    reading.start()
    reading.join(limit)
    assert not reading.is_alive(), f"still waiting for an answer after {limit} s"
    return outcome, time.monotonic() - started


def _read_namespace_from(server: _ScriptedServer, monkeypatch: pytest.MonkeyPatch,
                         tmp_path: Path) -> tuple[list[object], float]:
    """One read of the shared client (timeouts of 1 s) against ``server``."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "k", server.url, "tok")))
    monkeypatch.setattr(kube, "REQUEST_TIMEOUT", (1.0, 1.0), raising=False)
    kube.reset_clients()
    try:
        return _read_namespace_in_thread(10)
    finally:
        kube.reset_clients()
        server.close()


def test_a_request_to_an_api_server_that_never_answers_ends_within_the_timeout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The client had no default timeout: a request in flight when the API server's
    machine died waited for the kernel to give up (about 15 minutes). Then urllib3
    asked again three times after each timed-out read: 4 x the timeout."""
    server = _ScriptedServer([])
    outcome, elapsed = _read_namespace_from(server, monkeypatch, tmp_path)
    assert isinstance(outcome[0], urllib3.exceptions.ReadTimeoutError), outcome
    assert len(server.connections) == 1, "the timed-out read was asked again"
    assert elapsed < 3.9  # four timed-out reads take 4 s at the least


def test_a_connection_the_server_closed_unanswered_is_asked_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What a pooled keep-alive connection the server (or a load balancer) closed
    looks like: still retried, so an idle operator's next read does not fail."""
    body = json.dumps({"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": "shop"}}).encode()
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    server = _ScriptedServer([b"", answer])
    outcome, _ = _read_namespace_from(server, monkeypatch, tmp_path)
    namespace = outcome[0]
    assert isinstance(namespace, client.V1Namespace), outcome
    assert namespace.metadata is not None and namespace.metadata.name == "shop"
    assert len(server.connections) == 2
