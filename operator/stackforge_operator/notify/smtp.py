"""Hand an email to an SMTP server: encrypted always (STARTTLS or TLS), verified.

Blocking (smtplib): the sender runs it in a thread, and a watchdog cuts the
connection when the whole exchange has taken the timeout (smtplib's own timeout
bounds each read, so a server answering a byte at a time held the thread for as
long as it liked). The server's host is resolved and checked against the
allowed destinations (notify.destinations) before connecting, and the
connection goes to the address checked. A failure is classified as
SMTP classifies it: a 4xx answer and a broken connection are worth another
attempt, a 5xx answer (unknown mailbox, refused login) and a server that cannot
encrypt are not. What is logged of a failure is its code or its kind, never the
server's text (it can echo the account) nor the credentials.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from stackforge_operator.notify.destinations import DestinationRefusedError, Destinations, connect


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    # TLS from the first byte (port 465); otherwise STARTTLS before anything else.
    implicit_tls: bool = False
    ca_pem: str | None = field(default=None, repr=False)
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


class SmtpError(Exception):
    def __init__(self, problem: str, retryable: bool) -> None:
        super().__init__(problem)
        self.problem = problem
        self.retryable = retryable


def _context(server: SmtpServer) -> ssl.SSLContext:
    if server.ca_pem:
        return ssl.create_default_context(cadata=server.ca_pem)
    return ssl.create_default_context()


class _GuardedSmtp(smtplib.SMTP):
    """smtplib.SMTP connecting only to a checked address of its host, and never
    past ``deadline`` (time.monotonic()) while it connects or shakes hands."""

    def __init__(self, *, timeout: float) -> None:
        # The name given in EHLO: this host's, without smtplib's default lookup of
        # its fully qualified name (a DNS query before any deadline could run).
        super().__init__(local_hostname=socket.gethostname(), timeout=timeout)

    destinations: Destinations
    deadline: float
    # The socket as soon as it exists, for the watchdog: smtplib keeps it in
    # ``sock`` only once connected (and, with TLS, once the handshake is done).
    raw: socket.socket | None = None

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        # The name TLS verifies: smtplib sets it only when the host is given to the
        # constructor, which would connect before the watchdog could run.
        self._host = host
        sock = connect(host, port, min(timeout, self.deadline - time.monotonic()),
                       self.destinations)
        self._published(sock)
        return sock

    def _published(self, sock: socket.socket) -> None:
        """``sock`` is the one the watchdog cuts from now on; if the deadline passed
        before it could (the timer fired on a socket gone, or none), it is cut here."""
        self.raw = sock
        if time.monotonic() >= self.deadline:
            sock.close()
            raise TimeoutError("the exchange's time was up")

    def _handshake(self, context: ssl.SSLContext, sock: socket.socket) -> ssl.SSLSocket:
        """TLS over ``sock`` on a socket the watchdog holds during the handshake:
        wrapping detaches ``sock`` first, so cutting it then did nothing."""
        wrapped = context.wrap_socket(sock, server_hostname=self._host,
                                      do_handshake_on_connect=False)
        self._published(wrapped)
        wrapped.do_handshake()
        self._published(wrapped)
        return wrapped

    def starttls(self, keyfile: Any = None, certfile: Any = None,
                 context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
        """smtplib's STARTTLS, the handshake as in _handshake (smtplib's wraps with
        the handshake inside, out of the watchdog's reach)."""
        del keyfile, certfile  # never given: a client certificate is not used
        self.ehlo_or_helo_if_needed()
        if not self.has_extn("starttls"):
            raise smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server.")
        code, reply = self.docmd("STARTTLS")
        if code != 220:
            raise smtplib.SMTPResponseException(code, reply)
        assert self.sock is not None and context is not None
        self.sock = self._handshake(context, self.sock)
        # As smtplib: what was learned before encryption is forgotten.
        self.file = None
        self.helo_resp = self.ehlo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        return code, reply


class _GuardedSmtpTls(_GuardedSmtp):
    """TLS from the first byte (port 465) over _GuardedSmtp's connection, the
    certificate checked against the host's name. Not smtplib.SMTP_SSL: its wrap
    shakes hands inside, where the watchdog cannot reach the socket."""

    default_port = smtplib.SMTP_SSL_PORT

    def __init__(self, *, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(timeout=timeout)
        self.context = context

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return self._handshake(self.context, super()._get_socket(host, port, timeout))


class _Watchdog:
    """Shuts ``client``'s socket down at its deadline, which fails the blocking call."""

    def __init__(self, client: _GuardedSmtp) -> None:
        self._client = client
        self._timer = threading.Timer(client.deadline - time.monotonic(), self._cut)
        self._timer.daemon = True

    def _cut(self) -> None:
        sock: Any = self._client.sock or self._client.raw
        if sock is not None:
            # socket.socket's own shutdown: an SSL socket's would also drop its TLS
            # state under the reading thread's feet. OSError: closed already.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()


def _client(server: SmtpServer, timeout: float, destinations: Destinations) -> _GuardedSmtp:
    """Not connected yet (no host given), so the watchdog can run from the start."""
    client: _GuardedSmtp
    if server.implicit_tls:
        client = _GuardedSmtpTls(timeout=timeout, context=_context(server))
    else:
        client = _GuardedSmtp(timeout=timeout)
    client.destinations = destinations
    client.deadline = time.monotonic() + timeout
    return client


def _exchange(client: smtplib.SMTP, server: SmtpServer, message: EmailMessage) -> None:
    client.connect(server.host, server.port)
    if not server.implicit_tls:
        # Never on in clear text: a server without STARTTLS is refused (below).
        client.starttls(context=_context(server))
    if server.username is not None:
        client.login(server.username, server.password or "")
    # Recipients the server refused while accepting others get nothing
    # more: another attempt would repeat the message to those it took.
    client.send_message(message)


def send(server: SmtpServer, message: EmailMessage, timeout: float,
         destinations: Destinations) -> None:
    """Deliver ``message`` to its recipients within ``timeout`` in all; raises SmtpError."""
    client = _client(server, timeout, destinations)
    watchdog = _Watchdog(client)
    try:
        with watchdog, client:
            _exchange(client, server, message)
    except DestinationRefusedError as refused:
        raise SmtpError(f"destination refused: {refused}", retryable=False) from None
    except (OSError, smtplib.SMTPException) as error:
        # The watchdog fires at the deadline only: past it, a failure is the timeout's.
        if time.monotonic() >= client.deadline:
            raise SmtpError("SMTP Timeout", retryable=True) from None
        raise _classified(error) from None


def _classified(error: OSError | smtplib.SMTPException) -> SmtpError:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = sorted({code for code, _ in error.recipients.values()})
        return SmtpError(f"SMTP recipients refused ({', '.join(map(str, codes))})",
                         retryable=all(400 <= c < 500 for c in codes))
    if isinstance(error, smtplib.SMTPResponseException):
        # Login refused, sender refused, data refused: the code says whether for now.
        return SmtpError(f"SMTP {error.smtp_code}", retryable=400 <= error.smtp_code < 500)
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return SmtpError("SMTP server offers no STARTTLS (or no AUTH, for a login)",
                         retryable=False)
    if isinstance(error, ssl.SSLCertVerificationError):
        return SmtpError("SMTP server's certificate not verified", retryable=False)
    # Refused, reset, timed out, closed midway: the server may be back soon.
    return SmtpError(f"SMTP {type(error).__name__}", retryable=True)
