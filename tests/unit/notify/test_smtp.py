"""Emails handed to a real SMTP server (aiosmtpd in a thread): STARTTLS or TLS,
verified against the server's own CA, a login; each failure classified as SMTP
says (4xx: again later; 5xx, no encryption, an unknown certificate: not)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from stackforge_operator.devcluster.ports import free_port
from stackforge_operator.notify import smtp
from tests.support.smtp_server import USERNAME, SmtpServer

PASSWORD = "correct-horse-battery"


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer(PASSWORD) as running:
        yield running


def _message() -> EmailMessage:
    message = EmailMessage()
    message["Subject"], message["From"] = "[StackForge] [acme] Backup failed", "alerts@sf.io"
    message["To"] = "ops@stackforge.io, oncall@stackforge.io"
    message.set_content("the nightly dump failed\n")
    return message


def _to(server: SmtpServer, **changes: object) -> smtp.SmtpServer:
    settings: dict[str, object] = {
        "host": server.host, "port": server.port, "implicit_tls": server.implicit_tls,
        "ca_pem": server.ca_pem, "username": USERNAME, "password": PASSWORD}
    settings.update(changes)
    return smtp.SmtpServer(**settings)  # type: ignore[arg-type]


def test_a_message_reaches_every_recipient_over_starttls_with_a_login(
        server: SmtpServer) -> None:
    smtp.send(_to(server), _message(), timeout=10)
    [received] = server.messages()
    assert received.recipients == ["ops@stackforge.io", "oncall@stackforge.io"]
    assert received.login == USERNAME
    assert received.message["Subject"] == "[StackForge] [acme] Backup failed"
    assert received.message.get_content().splitlines() == ["the nightly dump failed"]


def test_implicit_tls_delivers_too() -> None:
    with SmtpServer(PASSWORD, implicit_tls=True) as server:
        smtp.send(_to(server), _message(), timeout=10)
        assert len(server.messages()) == 1


@pytest.mark.parametrize(("reply", "retryable"), [("451 4.3.0 try again later", True),
                                                  ("554 5.7.1 rejected", False)])
def test_a_refused_message_is_retried_only_for_a_4xx(
        server: SmtpServer, reply: str, retryable: bool) -> None:
    server.fail_next(1, reply)
    with pytest.raises(smtp.SmtpError) as failed:
        smtp.send(_to(server), _message(), timeout=10)
    assert failed.value.retryable is retryable
    assert failed.value.problem == f"SMTP {reply[:3]}"
    assert server.messages() == []


def test_a_wrong_password_is_not_retried_and_not_told(server: SmtpServer) -> None:
    with pytest.raises(smtp.SmtpError) as failed:
        smtp.send(_to(server, password="wrong-password"), _message(), timeout=10)
    assert failed.value.problem == "SMTP 535" and not failed.value.retryable
    assert server.logins_refused >= 1 and server.messages() == []
    assert "wrong-password" not in str(failed.value) and USERNAME not in str(failed.value)


def test_a_server_without_starttls_gets_nothing_in_clear_text() -> None:
    with SmtpServer(PASSWORD, starttls=False) as server:
        with pytest.raises(smtp.SmtpError) as failed:
            smtp.send(_to(server), _message(), timeout=10)
        assert "STARTTLS" in failed.value.problem and not failed.value.retryable
        assert server.messages() == []


def test_a_certificate_of_another_ca_is_refused(server: SmtpServer) -> None:
    with SmtpServer(PASSWORD) as other, pytest.raises(smtp.SmtpError) as failed:
        smtp.send(_to(server, ca_pem=other.ca_pem), _message(), timeout=10)
    assert "certificate" in failed.value.problem and not failed.value.retryable
    assert server.messages() == []


def test_no_server_listening_is_worth_another_attempt() -> None:
    port = free_port()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    with pytest.raises(smtp.SmtpError) as failed:
        smtp.send(smtp.SmtpServer("127.0.0.1", port), _message(), timeout=5)
    assert failed.value.retryable and failed.value.problem.startswith("SMTP ")


def test_credentials_stay_out_of_the_servers_repr() -> None:
    shown = repr(smtp.SmtpServer("smtp.example.com", 587, ca_pem="PEM", username="u-name",
                                 password="p-word"))
    assert "p-word" not in shown and "u-name" not in shown and "PEM" not in shown


def test_the_test_server_leaves_no_files_behind() -> None:
    with SmtpServer(PASSWORD) as server:
        kept = server._dir
        assert any(kept.iterdir())  # its CA and key, while it runs
    assert not kept.exists()
