"""A real HTTP server that records what it receives, for notification tests.

Threaded (one thread per request), so a request made to hang does not stop
others from being answered. Behaviour is controlled per test: the next N
requests fail with a status, or hang for a while before answering.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    body: Any  # parsed JSON, or the raw text when it is not JSON
    headers: dict[str, str]
    at: float  # time.monotonic() when it arrived
    status: int  # what it was answered (or was about to be, for a hanging request)


class Receiver:
    """Start with :meth:`start` (or as a context manager); URLs with :meth:`url`."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self._lock = threading.Lock()
        self._requests: list[Received] = []
        self._fail: list[tuple[int, dict[str, str]]] = []
        self.hang_seconds = 0.0
        self._stop_hanging = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._scheme = "http"
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self._scheme = "https"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- control ------------------------------------------------------------------

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop_hanging.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self._scheme}://{host}:{self.port}{path}"

    def fail_next(self, count: int, status: int = 500, headers: dict[str, str] | None = None
                  ) -> None:
        """Answer the next ``count`` requests with ``status`` (recording them all the same)."""
        with self._lock:
            self._fail += [(status, dict(headers or {}))] * count

    def hang(self, seconds: float) -> None:
        """Hold every request this long before answering (0: answer at once)."""
        self.hang_seconds = seconds
        if seconds:
            self._stop_hanging.clear()
        else:
            self._stop_hanging.set()

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- what arrived -------------------------------------------------------------

    def requests(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._requests if path is None or r.path == path]

    def bodies(self, path: str | None = None,
               where: Callable[[Any], bool] | None = None) -> list[Any]:
        return [r.body for r in self.requests(path) if where is None or where(r.body)]

    # -- the server ---------------------------------------------------------------

    def _record(self, method: str, path: str, body: Any, headers: dict[str, str]
                ) -> tuple[int, dict[str, str]]:
        with self._lock:
            status, extra = self._fail.pop(0) if self._fail else (200, {})
            self._requests.append(Received(method, path, body, headers, time.monotonic(),
                                           status))
            return status, extra

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode(errors="replace")
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw
                status, headers = receiver._record("POST", self.path, body,
                                                   dict(self.headers.items()))
                if receiver.hang_seconds:
                    receiver._stop_hanging.wait(receiver.hang_seconds)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: tests read what was recorded instead

        return Handler
