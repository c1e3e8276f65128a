"""A TCP proxy that breaks the connection through it on demand, for the chaos tests.

Between a client (the operator) and a server (the API server): TLS passes
through untouched. Faults, each until changed:

- ``latency(seconds)``: every chunk from the server reaches the client that
  much later (order and throughput kept: chunks are queued, not slept on one
  by one), as Toxiproxy's latency toxic does downstream;
- ``reset()``: every open connection is closed with a TCP reset, at once;
- ``black_hole(True)``: nothing passes either way and new connections get no
  answer, as when packets are dropped; what was sent meanwhile flows once it is
  lifted (TCP would retransmit it).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from stackforge_operator.devcluster.kubeconfig import python_discovery_cache
from stackforge_operator.devcluster.ports import free_port

_CHUNK = 65536

# The faults of issue #17's case 3, for both of its tests (kwok and the real node).
LATENCY_SECONDS = 2.0
RESET_EVERY_SECONDS = 2.0
BLACK_HOLE_SECONDS = 60


@dataclass(eq=False)  # by identity: kept in a set
class _Connection:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, port: int = 0) -> None:
        """``port``: where to listen once started (0: a port the kernel picks)."""
        self.upstream = (upstream_host, upstream_port)
        self.port = port
        self._delay = 0.0
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._connections: set[_Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy",
                                        daemon=True)
        self.accepted = 0

    # -- from the test's thread ------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self._call(self._close_all(reset=False))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        # A Python client that reached an API server through the proxy (the
        # operator, through kubeconfig_through) left its discovery cache of the
        # proxy's address in the temporary directory; LocalCluster.stop()
        # removes its own address's, and it cannot know this one.
        python_discovery_cache(self.url()).unlink(missing_ok=True)

    def url(self) -> str:
        """The proxy as an API server's address: the API server's certificate names
        127.0.0.1, so TLS verifies through it."""
        return f"https://127.0.0.1:{self.port}"

    def latency(self, seconds: float) -> None:
        self._delay = seconds

    def reset(self) -> int:
        """Reset every open connection; returns how many there were."""
        return self._call(self._close_all(reset=True))

    def black_hole(self, on: bool) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear if on else self._flowing.set)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @contextlib.contextmanager
    def resets_every(self, seconds: float, lasting: float) -> Iterator[list[int]]:
        """Reset every connection every ``seconds`` in the background, for ``lasting``
        seconds or until the block ends; yields the count reset each time."""
        done = threading.Event()
        counts: list[int] = []

        def run() -> None:
            end = time.monotonic() + lasting
            while not done.wait(seconds) and time.monotonic() < end:
                counts.append(self.reset())

        worker = threading.Thread(target=run, name="fault-proxy-resets", daemon=True)
        worker.start()
        try:
            yield counts
        finally:
            done.set()
            worker.join(timeout=seconds + 10)

    def _call(self, coroutine: Coroutine[Any, Any, int]) -> int:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    # -- in the proxy's loop ---------------------------------------------------------

    async def _listen(self) -> int:
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        connection = _Connection(writer)
        self._connections.add(connection)
        try:
            await self._flowing.wait()  # a black hole answers no new connection either
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            self._abort(connection, reset=True)
            return
        connection.server = up_writer
        connection.tasks = [
            asyncio.create_task(self._pipe(reader, up_writer, connection, delayed=False)),
            asyncio.create_task(self._pipe(up_reader, writer, connection, delayed=True)),
        ]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    connection: _Connection, *, delayed: bool) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

        sender = asyncio.create_task(deliver())
        try:
            while True:
                data = await reader.read(_CHUNK)
                await self._flowing.wait()
                await queue.put((time.monotonic() + (self._delay if delayed else 0.0), data))
                if not data:
                    break
            await sender
        except (OSError, asyncio.CancelledError):
            sender.cancel()
            self._abort(connection, reset=False)

    def _abort(self, connection: _Connection, *, reset: bool) -> None:
        self._connections.discard(connection)
        for task in connection.tasks:
            task.cancel()
        for writer in (connection.client, connection.server):
            if writer is None:
                continue
            if reset:
                raw = writer.get_extra_info("socket")
                if raw is not None:
                    # Linger 0: close() sends a reset, not a FIN.
                    with contextlib.suppress(OSError):
                        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            if reset:
                writer.transport.abort()
            else:
                writer.close()

    async def _close_all(self, *, reset: bool) -> int:
        connections = list(self._connections)
        for connection in connections:
            self._abort(connection, reset=reset)
        if not reset and self._server is not None:
            self._server.close()
        return len(connections)


@contextlib.contextmanager
def opening_after(seconds: float, upstream_host: str, upstream_port: int
                  ) -> Iterator[FaultProxy]:
    """A proxy to the upstream on a port known now that listens only after ``seconds``
    (a database that is not yet there); stopped when the block ends."""
    late = FaultProxy(upstream_host, upstream_port, port=free_port())
    opening = threading.Timer(seconds, late.start)
    opening.start()
    try:
        yield late
    finally:
        opening.join()
        late.stop()


def upstream_of(server: str) -> tuple[str, int]:
    """The (host, port) of an API server's URL, for the proxy's upstream."""
    address = urlsplit(server)
    assert address.hostname and address.port, server
    return address.hostname, address.port


def kubeconfig_through(kubeconfig: Path, proxy: FaultProxy, path: Path) -> Path:
    """A copy of ``kubeconfig`` whose server is the proxy (:meth:`FaultProxy.url`)."""
    config = yaml.safe_load(kubeconfig.read_text())
    for entry in config["clusters"]:
        entry["cluster"]["server"] = proxy.url()
    path.write_text(yaml.safe_dump(config))
    return path
