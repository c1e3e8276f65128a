"""A real SMTP server process for the tests (aiosmtpd, in a thread): STARTTLS or TLS
with a certificate of its own CA, a login required over TLS, every message kept.

``fail_next(n, reply)`` answers the next ``n`` messages' DATA with ``reply`` (a 4xx
to prove retries, a 5xx to prove giving up).
"""

from __future__ import annotations

import shutil
import ssl
import tempfile
import threading
import warnings
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from stackforge_operator.devcluster.pki import create_server_tls
from stackforge_operator.devcluster.ports import free_port

USERNAME = "stackforge-alerts"


class _QuietController(Controller):
    def factory(self) -> SMTP:
        # The servers without STARTTLS (implicit TLS, or none to prove the client
        # refuses) are meant so; aiosmtpd warns about them at every connection.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
            # aiosmtpd leaves Controller.factory unannotated; it returns an SMTP.
            server: SMTP = super().factory()  # type: ignore[no-untyped-call]
            return server


@dataclass(frozen=True)
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    login: str | None


class SmtpServer:
    def __init__(self, password: str, *, implicit_tls: bool = False,
                 starttls: bool = True, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port()
        self.password = password
        self.implicit_tls = implicit_tls
        self._dir = Path(tempfile.mkdtemp(prefix="sf-smtp-"))
        ca, served = create_server_tls(self._dir, "stackforge-test-smtp",
                                       server_names=("localhost",), server_ips=(host,))
        self.ca_pem = ca.cert.read_text()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(served.cert), str(served.key))
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._failures: list[str] = []
        self.logins_refused = 0
        options: dict[str, Any] = {
            "authenticator": self._authenticate, "auth_required": True,
            # No login in clear text: as a real provider's submission port.
            "auth_require_tls": True}
        if implicit_tls:
            # Every byte is encrypted already; aiosmtpd counts only STARTTLS as TLS.
            options.update(ssl_context=context, auth_require_tls=False)
        elif starttls:
            options.update(tls_context=context, require_starttls=True)
        else:
            options["auth_require_tls"] = False
        self._controller = _QuietController(self, hostname=host, port=self.port,
                                      server_hostname="localhost", **options)

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._controller.stop()
        # Its CA and its server's private key: nothing is left in /tmp.
        shutil.rmtree(self._dir, ignore_errors=True)

    def fail_next(self, count: int, reply: str = "451 4.3.0 try again later") -> None:
        with self._lock:
            self._failures += [reply] * count

    def messages(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def _authenticate(self, _server: SMTP, session: Session, _envelope: Envelope,
                      _mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and (
                auth_data.login.decode() == USERNAME
                and auth_data.password.decode() == self.password):
            session.stackforge_login = USERNAME  # type: ignore[attr-defined]
            return AuthResult(success=True)
        with self._lock:
            self.logins_refused += 1
        return AuthResult(success=False, handled=False)

    async def handle_DATA(self, _server: SMTP, session: Session,  # noqa: N802 - aiosmtpd's
                          envelope: Envelope) -> str:
        with self._lock:
            if self._failures:
                return self._failures.pop(0)
            content = envelope.original_content or b""
            message = message_from_bytes(content, policy=policy.default)
            assert isinstance(message, EmailMessage)
            self._received.append(Received(
                str(envelope.mail_from), [str(r) for r in envelope.rcpt_tos], message,
                getattr(session, "stackforge_login", None)))
        return "250 OK"
