"""An HTTP(S) proxy in front of the tests' S3 server that answers errors and slowly.

The client signs its requests for the proxy's address; the proxy passes the
Host header on unchanged, so the server checks the very signature the client
made. Faults, each until changed: ``fail_every(n, status)`` answers every n-th
request itself with ``status`` (S3's own error body), ``fail_all(status)``
answers all of them so, and ``delay(seconds)`` holds every answer that long.

For clients that speak only HTTPS (pgBackRest), the proxy terminates TLS with
the server's own certificate (``serving``: it stands in for the same names)
and talks HTTPS to the server, trusting ``upstream_ca``.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_CODES = {500: "InternalError", 503: "SlowDown"}


class S3FaultProxy:
    def __init__(self, upstream: str, *, host: str = "127.0.0.1",
                 serving: tuple[Path, Path] | None = None,
                 upstream_ca: Path | None = None) -> None:
        """``serving``: (certificate, key) to serve HTTPS with; ``upstream_ca``: the
        CA of an ``https`` upstream."""
        address = urlsplit(upstream)
        assert address.scheme in ("http", "https") and address.hostname and address.port
        assert (address.scheme == "https") == (upstream_ca is not None)
        self._upstream = (address.hostname, address.port)
        self._upstream_tls: ssl.SSLContext | None = None
        if upstream_ca is not None:
            self._upstream_tls = ssl.create_default_context(cafile=str(upstream_ca))
            # Reached by its address; the names its certificate carries are the
            # clients' business, checked by them against this proxy.
            self._upstream_tls.check_hostname = False
        self._lock = threading.Lock()
        self._every = 0
        self._status = 503
        self._delay = 0.0
        self.requests = 0
        self.failed = 0
        self._server = ThreadingHTTPServer((host, 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        scheme = "http"
        if serving is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(serving[0]), str(serving[1]))
            # The handshake in the handler's thread, not in the accepting one.
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False)
            scheme = "https"
        self.endpoint = f"{scheme}://{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> S3FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_every(self, n: int, status: int = 503) -> None:
        with self._lock:
            self._every, self._status = n, status

    def fail_all(self, status: int = 500) -> None:
        self.fail_every(1, status)

    def heal(self) -> None:
        self.fail_every(0)
        self._delay = 0.0

    def delay(self, seconds: float) -> None:
        self._delay = seconds

    def _fails(self) -> int | None:
        with self._lock:
            self.requests += 1
            if self._every and self.requests % self._every == 0:
                self.failed += 1
                return self._status
            return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _body(self) -> bytes:
                if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
                    length = int(self.headers.get("Content-Length") or 0)
                    return self.rfile.read(length) if length else b""
                # botocore streams uploads over HTTPS in HTTP chunks (the body
                # itself aws-chunked, with a checksum trailer): undo only the
                # transport's chunking; the server reads the aws-chunked content.
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline().strip():
                    pass  # the transport's trailers (none are sent)
                return b"".join(chunks)

            def _any(self) -> None:
                body = self._body()
                time.sleep(proxy._delay)
                status = proxy._fails()
                if status is not None:
                    code = _CODES.get(status, "InternalError")
                    answer = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}'
                              f'</Code><Message>injected by the tests</Message></Error>'
                              ).encode()
                    self._reply(status, {"Content-Type": "application/xml"}, answer)
                    return
                upstream = (http.client.HTTPSConnection(*proxy._upstream, timeout=120,
                                                        context=proxy._upstream_tls)
                            if proxy._upstream_tls is not None
                            else http.client.HTTPConnection(*proxy._upstream, timeout=120))
                try:
                    # The proxy answered the client's "Expect: 100-continue"
                    # itself and holds the whole body: the server is not asked,
                    # and is sent it at its length.
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in ("expect", "transfer-encoding")}
                    if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                        headers["Content-Length"] = str(len(body))
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                    # A HEAD's length is the object's, not of the (empty) body.
                    dropped = {"transfer-encoding", "connection"} | (
                        set() if self.command == "HEAD" else {"content-length"})
                    answered = {k: v for k, v in response.getheaders()
                                if k.lower() not in dropped}
                    self._reply(response.status, answered, data)
                finally:
                    upstream.close()

            def _reply(self, status: int, headers: dict[str, Any], data: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if "content-length" not in {k.lower() for k in headers}:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
