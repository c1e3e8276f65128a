"""moto's S3 server, with responses that pgBackRest can read over TLS.

``python -m stackforge_operator.devcluster.s3app -H HOST -p PORT [--ssl-cert C --ssl-key K]``
serves what ``moto_server`` serves. The differences: werkzeug's development
server closes the connection after every response, and Python's TLS sockets
close without a close_notify; some answers (an object PUT's, for one) also come
without a Content-Length. pgBackRest, on OpenSSL 3, reads that bare close as
"unexpected eof" and fails the request (retrying until it gives up); boto3 does
not mind. Here every response says its length, and the TLS session is ended
properly before the connection closes.
"""

from __future__ import annotations

import argparse
import os
import signal
import ssl
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


def with_content_length(app: WsgiApp) -> WsgiApp:
    """``app``, with its body collected and measured when it did not say how long it is.

    Only such responses are buffered: an object download carries its own
    Content-Length and streams as before.
    """
    def framed(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        captured: dict[str, Any] = {}

        def remember(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured.update(status=status, headers=headers, exc_info=exc_info)
            return lambda _data: None  # the legacy write() callable; moto never uses it

        body = app(environ, remember)
        headers: list[tuple[str, str]] = captured["headers"]
        names = {name.lower() for name, _ in headers}
        if "content-length" in names or "transfer-encoding" in names:
            start_response(captured["status"], headers, captured["exc_info"])
            return body
        try:
            data = b"".join(body)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        # HEAD: the length is the one a GET would have; nothing is sent either way.
        length = 0 if environ.get("REQUEST_METHOD") == "HEAD" else len(data)
        start_response(captured["status"], [*headers, ("Content-Length", str(length))],
                       captured["exc_info"])
        return _once(data)

    return framed


def _once(data: bytes) -> Iterator[bytes]:
    yield data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument("--ssl-cert")
    parser.add_argument("--ssl-key")
    args = parser.parse_args(argv)
    if bool(args.ssl_cert) != bool(args.ssl_key):
        parser.error("--ssl-cert and --ssl-key go together")

    # Imported here: moto is a development dependency, and --help needs none of it.
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    # As moto_server does: the port for the URLs moto builds, a clean exit on signals.
    os.environ.setdefault("MOTO_PORT", str(args.port))
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: sys.exit(0))
    class EndsTlsSessions(MotoRequestHandler):
        def finish(self) -> None:
            super().finish()
            end_tls_session(self.connection)

    app = with_content_length(DomainDispatcherApplication(create_backend_app))
    tls = (args.ssl_cert, args.ssl_key) if args.ssl_cert else None
    run_simple(args.host, args.port, app, threaded=True, ssl_context=tls,
               request_handler=EndsTlsSessions)


def end_tls_session(connection: object, timeout: float = 2.0) -> None:
    """Send close_notify (and take the client's) before the connection closes.

    A client that simply drops the connection is fine too; one that neither
    answers nor closes costs its request thread ``timeout`` seconds at most.
    """
    if not isinstance(connection, ssl.SSLSocket):
        return
    try:
        connection.settimeout(timeout)
        connection.unwrap()
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    main()
