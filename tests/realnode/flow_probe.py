"""Runs inside the flow test's stand-in pods (the operator image's python3).

    flow_probe.py listen PORT[/udp] ...     serve each port: TCP accepts, UDP answers
    flow_probe.py connect IP:PORT[/udp] ... try each at once; print {target: reached}
    flow_probe.py get URL                   print the body of an HTTP GET (exit 1: none)
    flow_probe.py hold IP:PORT SECONDS      open a connection and wait for the server
                                            to close it: print "closed" (exit 0), or
                                            "open" when SECONDS pass (exit 1)

A TCP target is reached when the handshake completes; a UDP one when any
answer comes back to a DNS query (the listener answers anything, and CoreDNS
answers the query). A refusal and a silent drop both count as not reached.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

TIMEOUT_SECONDS = 2.0
# A DNS query for "kubernetes.default.svc.cluster.local", type A.
DNS_QUERY = bytes.fromhex("abcd01000001000000000000") + b"".join(
    bytes([len(label)]) + label.encode()
    for label in ["kubernetes", "default", "svc", "cluster", "local"]) + b"\x00\x00\x01\x00\x01"


def _serve_tcp(port: int) -> None:
    server = socket.create_server(("", port), family=socket.AF_INET, backlog=64)
    while True:
        connection, _ = server.accept()
        connection.close()


def _serve_udp(port: int) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("", port))
    while True:
        data, peer = server.recvfrom(2048)
        server.sendto(data, peer)


def listen(specs: list[str]) -> None:
    for spec in specs:
        port, _, proto = spec.partition("/")
        serve = _serve_udp if proto == "udp" else _serve_tcp
        threading.Thread(target=serve, args=(int(port),), daemon=True).start()
    print("listening", " ".join(specs), flush=True)
    threading.Event().wait()


def _reached(target: str) -> bool:
    address, _, proto = target.partition("/")
    host, _, port = address.rpartition(":")
    if proto == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.settimeout(TIMEOUT_SECONDS)
            probe.sendto(DNS_QUERY, (host, int(port)))
            try:
                probe.recvfrom(2048)
            except OSError:
                return False
            return True
    try:
        socket.create_connection((host, int(port)), timeout=TIMEOUT_SECONDS).close()
    except OSError:
        return False
    return True


def connect(targets: list[str]) -> None:
    with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
        results = dict(zip(targets, pool.map(_reached, targets), strict=True))
    print(json.dumps(results))


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            sys.stdout.write(response.read().decode())
    except OSError as error:
        print(f"no answer from {url}: {error}", file=sys.stderr)
        return 1
    return 0


def hold(target: str, seconds: float) -> int:
    host, _, port = target.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=TIMEOUT_SECONDS) as held:
        print("connected", flush=True)
        held.settimeout(seconds)
        try:
            while held.recv(4096):
                pass
        except TimeoutError:
            print("open")
            return 1
        except OSError:
            pass  # reset by the peer: closed too
    print("closed")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("listen", "connect", "get", "hold"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "get":
        return get(argv[1])
    if argv[0] == "hold":
        return hold(argv[1], float(argv[2]))
    (listen if argv[0] == "listen" else connect)(argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
