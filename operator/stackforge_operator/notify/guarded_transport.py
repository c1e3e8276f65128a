"""An httpx transport whose connections go only to addresses notify.destinations allows.

httpx connects through httpcore, which resolves the host itself. This wraps
httpcore's network backend: it resolves the host, checks every address, and
connects to a checked one, so the address checked is the address reached. TLS
still names the URL's host (httpcore takes the server name from the request,
not from the address connected to), so certificates are verified as before.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from stackforge_operator.notify.destinations import Destinations


class GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend, destinations: Destinations) -> None:
        self._inner = inner
        self._destinations = destinations

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            # A name that does not resolve now may later: a connection error, retried.
            raise httpcore.ConnectError(type(error).__name__) from None
        # Raises DestinationRefusedError, which httpx passes through unmapped.
        addresses = self._destinations.check([str(info[4][0]) for info in infos])
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        raise failure or httpcore.ConnectError("no address")

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ARG002
                                  socket_options: Iterable[Any] | None = None,  # noqa: ARG002
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("notifications never go to a local socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(destinations: Destinations) -> httpx.AsyncHTTPTransport:
    """httpx's own transport (its TLS defaults, pool and limits), its connections guarded.

    No environment proxy applies to a client given a transport: a proxy would
    make the connections itself, out of this check's sight.
    """
    transport = httpx.AsyncHTTPTransport()
    # httpx takes no network backend; its pool does. Asserted by the unit test
    # that a denied address is refused, so an httpx that renames this fails there.
    pool = transport._pool
    assert isinstance(pool, httpcore.AsyncConnectionPool)
    pool._network_backend = GuardedBackend(pool._network_backend, destinations)
    return transport
