"""Hand an email to an SMTP server: encrypted always (STARTTLS or TLS), verified.

Blocking (smtplib): the sender runs it in a thread. A failure is classified as
SMTP classifies it: a 4xx answer and a broken connection are worth another
attempt, a 5xx answer (unknown mailbox, refused login) and a server that cannot
encrypt are not. What is logged of a failure is its code or its kind, never the
server's text (it can echo the account) nor the credentials.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage


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


def _connect(server: SmtpServer, timeout: float) -> smtplib.SMTP:
    context = _context(server)
    if server.implicit_tls:
        return smtplib.SMTP_SSL(server.host, server.port, timeout=timeout, context=context)
    client = smtplib.SMTP(server.host, server.port, timeout=timeout)
    try:
        # Never on in clear text: a server without STARTTLS is refused (below).
        client.starttls(context=context)
    except BaseException:
        client.close()
        raise
    return client


def send(server: SmtpServer, message: EmailMessage, timeout: float) -> None:
    """Deliver ``message`` to its recipients; raises SmtpError."""
    try:
        with _connect(server, timeout) as client:
            if server.username is not None:
                client.login(server.username, server.password or "")
            # Recipients the server refused while accepting others get nothing
            # more: another attempt would repeat the message to those it took.
            client.send_message(message)
    except smtplib.SMTPRecipientsRefused as error:
        codes = sorted({code for code, _ in error.recipients.values()})
        raise SmtpError(f"SMTP recipients refused ({', '.join(map(str, codes))})",
                          retryable=all(400 <= c < 500 for c in codes)) from None
    except smtplib.SMTPResponseException as error:
        # Login refused, sender refused, data refused: the code says whether for now.
        raise SmtpError(f"SMTP {error.smtp_code}",
                          retryable=400 <= error.smtp_code < 500) from None
    except smtplib.SMTPNotSupportedError:
        raise SmtpError("SMTP server offers no STARTTLS (or no AUTH, for a login)",
                          retryable=False) from None
    except ssl.SSLCertVerificationError:
        raise SmtpError("SMTP server's certificate not verified", retryable=False) from None
    except (OSError, smtplib.SMTPException) as error:
        # Refused, reset, timed out, closed midway: the server may be back soon.
        raise SmtpError(f"SMTP {type(error).__name__}", retryable=True) from None
