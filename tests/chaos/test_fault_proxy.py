"""The chaos tests' fault proxy does what it says: latency, resets, a black hole
(against an echo server on loopback)."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from stackforge_operator.devcluster.kubeconfig import python_discovery_cache
from tests.support.fault_proxy import FaultProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        # The reset test's connection ends in a reset: an end like any other here,
        # not a traceback in the run's output.
        with contextlib.suppress(ConnectionResetError):
            while data := self.request.recv(4096):
                self.request.sendall(data)


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with FaultProxy("127.0.0.1", server.server_address[1]) as running:
        yield running
    server.shutdown()
    server.server_close()


def _round_trip(connection: socket.socket, payload: bytes = b"ping") -> float:
    started = time.monotonic()
    connection.sendall(payload)
    assert connection.recv(4096) == payload
    return time.monotonic() - started


def test_latency_delays_each_answer_and_passes_everything(proxy: FaultProxy) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as connection:
        assert _round_trip(connection) < 0.5
        proxy.latency(0.6)
        assert 0.6 <= _round_trip(connection) < 1.5
        proxy.latency(0)
        assert _round_trip(connection) < 0.5


def test_a_reset_breaks_every_open_connection_and_new_ones_work(proxy: FaultProxy) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as connection:
        _round_trip(connection)
        assert proxy.reset() == 1
        with pytest.raises(ConnectionResetError):
            connection.sendall(b"after")
            connection.recv(4096)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as again:
        _round_trip(again)


def test_a_black_hole_holds_everything_until_lifted(proxy: FaultProxy) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as connection:
        _round_trip(connection)
        proxy.black_hole(True)
        connection.sendall(b"held")
        connection.settimeout(1)
        with pytest.raises(TimeoutError):
            connection.recv(4096)
        proxy.black_hole(False)
        connection.settimeout(10)
        assert connection.recv(4096) == b"held"


def test_stopping_removes_a_python_clients_discovery_cache_of_its_address() -> None:
    # The DynamicClient of a client that went through the proxy writes one
    # file per address and never removes it; every proxy has a new port.
    proxy = FaultProxy("127.0.0.1", 9).start()
    cache = python_discovery_cache(proxy.url())
    cache.write_text("{}")
    other = python_discovery_cache("https://127.0.0.1:1")
    other.write_text("{}")
    try:
        proxy.stop()
        assert not cache.exists()
        assert other.exists()  # only its own
    finally:
        cache.unlink(missing_ok=True)
        other.unlink(missing_ok=True)
