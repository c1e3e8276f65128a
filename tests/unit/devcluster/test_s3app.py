"""The S3 server's response framing (devcluster/s3app.py), on WSGI apps of the test's own.

(That pgBackRest works against the running server: tests/backup/test_pgbackrest_s3.py.)
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stackforge_operator.devcluster.pki import create_server_tls
from stackforge_operator.devcluster.s3app import end_tls_session, with_content_length


class Closable:
    """A response body that records being closed, as WSGI servers must do."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        self.closed = True


def _app(headers: list[tuple[str, str]], body: Iterable[bytes]) -> Callable[..., Iterable[bytes]]:
    def app(_environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", headers)
        return body
    return app


def _call(app: Callable[..., Iterable[bytes]], method: str = "PUT"
          ) -> tuple[str, list[tuple[str, str]], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], _exc: Any = None) -> None:
        seen.update(status=status, headers=headers)

    body = b"".join(with_content_length(app)({"REQUEST_METHOD": method}, start_response))
    return seen["status"], seen["headers"], body


def test_a_body_without_a_length_is_measured_and_closed() -> None:
    body = Closable([b"<ok/>", b"", b"done"])
    status, headers, data = _call(_app([("ETag", '"x"')], body))
    assert status == "200 OK" and data == b"<ok/>done"
    assert headers == [("ETag", '"x"'), ("Content-Length", "9")]
    assert body.closed


def test_an_empty_answer_says_zero() -> None:
    _, headers, data = _call(_app([], []))
    assert data == b"" and ("Content-Length", "0") in headers


def test_a_head_answer_keeps_no_body_and_says_zero_when_the_app_said_nothing() -> None:
    _, headers, _ = _call(_app([], [b"ignored"]), method="HEAD")
    assert ("Content-Length", "0") in headers


@pytest.mark.parametrize("framing", [("Content-Length", "3"),
                                     ("content-length", "3"),
                                     ("Transfer-Encoding", "chunked")])
def test_a_framed_answer_streams_untouched(framing: tuple[str, str]) -> None:
    body = Closable([b"abc"])
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], _exc: Any = None) -> None:
        seen["headers"] = headers

    returned = with_content_length(_app([framing], body))({"REQUEST_METHOD": "GET"},
                                                          start_response)
    # The very body object: nothing was read ahead (large downloads stream).
    assert returned is body and not body.closed
    assert seen["headers"] == [framing]


def test_ending_a_tls_session_sends_close_notify(tmp_path: Path) -> None:
    ca, server_tls = create_server_tls(tmp_path, "s3app-test", server_names=("localhost",),
                                       server_ips=("127.0.0.1",))
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(str(server_tls.cert), str(server_tls.key))
    client_context = ssl.create_default_context(cafile=str(ca.cert))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    outcome: dict[str, Any] = {}

    def serve() -> None:
        raw, _ = listener.accept()
        with server_context.wrap_socket(raw, server_side=True) as connection:
            connection.sendall(b"answer")
            end_tls_session(connection)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                client_context.wrap_socket(raw, server_hostname="localhost",
                                           suppress_ragged_eofs=False) as client:
            received = b""
            # b"" on a close_notify; a bare close raises SSLEOFError instead.
            while chunk := client.recv(1024):
                received += chunk
            outcome["received"] = received
            client.unwrap()
    finally:
        thread.join(timeout=10)
        listener.close()
    assert outcome["received"] == b"answer"


def test_ending_a_plain_connection_does_nothing() -> None:
    left, right = socket.socketpair()
    with left, right:
        end_tls_session(left)
        left.sendall(b"still open")
        assert right.recv(32) == b"still open"
