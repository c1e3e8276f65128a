"""Emails handed to a real SMTP server (aiosmtpd in a thread): STARTTLS or TLS,
verified against the server's own CA, a login; each failure classified as SMTP
says (4xx: again later; 5xx, no encryption, an unknown certificate: not)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from stackforge_operator.devcluster.pki import create_server_tls
from stackforge_operator.devcluster.ports import free_port
from stackforge_operator.notify import destinations, smtp
from stackforge_operator.notify.destinations import DEFAULT, Destinations
from tests.support.smtp_server import USERNAME, SmtpServer

PASSWORD = "correct-horse-battery"
# The servers here listen on this host, which the defaults refuse.
LOCAL = Destinations.parse(allowed="127.0.0.0/8 ::1/128")


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
    smtp.send(_to(server), _message(), timeout=10, destinations=LOCAL)
    [received] = server.messages()
    assert received.recipients == ["ops@stackforge.io", "oncall@stackforge.io"]
    assert received.login == USERNAME
    assert received.message["Subject"] == "[StackForge] [acme] Backup failed"
    assert received.message.get_content().splitlines() == ["the nightly dump failed"]


def test_implicit_tls_delivers_too() -> None:
    with SmtpServer(PASSWORD, implicit_tls=True) as server:
        smtp.send(_to(server), _message(), timeout=10, destinations=LOCAL)
        assert len(server.messages()) == 1


@pytest.mark.parametrize(("reply", "retryable"), [("451 4.3.0 try again later", True),
                                                  ("554 5.7.1 rejected", False)])
def test_a_refused_message_is_retried_only_for_a_4xx(
        server: SmtpServer, reply: str, retryable: bool) -> None:
    server.fail_next(1, reply)
    with pytest.raises(smtp.SmtpError) as failed:
        smtp.send(_to(server), _message(), timeout=10, destinations=LOCAL)
    assert failed.value.retryable is retryable
    assert failed.value.problem == f"SMTP {reply[:3]}"
    assert server.messages() == []


def test_a_wrong_password_is_not_retried_and_not_told(server: SmtpServer) -> None:
    with pytest.raises(smtp.SmtpError) as failed:
        smtp.send(_to(server, password="wrong-password"), _message(), timeout=10,
                  destinations=LOCAL)
    assert failed.value.problem == "SMTP 535" and not failed.value.retryable
    assert server.logins_refused >= 1 and server.messages() == []
    assert "wrong-password" not in str(failed.value) and USERNAME not in str(failed.value)


def test_a_server_without_starttls_gets_nothing_in_clear_text() -> None:
    with SmtpServer(PASSWORD, starttls=False) as server:
        with pytest.raises(smtp.SmtpError) as failed:
            smtp.send(_to(server), _message(), timeout=10, destinations=LOCAL)
        assert "STARTTLS" in failed.value.problem and not failed.value.retryable
        assert server.messages() == []


def test_a_certificate_of_another_ca_is_refused(server: SmtpServer) -> None:
    with SmtpServer(PASSWORD) as other, pytest.raises(smtp.SmtpError) as failed:
        smtp.send(_to(server, ca_pem=other.ca_pem), _message(), timeout=10, destinations=LOCAL)
    assert "certificate" in failed.value.problem and not failed.value.retryable
    assert server.messages() == []


def test_no_server_listening_is_worth_another_attempt() -> None:
    port = free_port()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    with pytest.raises(smtp.SmtpError) as failed:
        smtp.send(smtp.SmtpServer("127.0.0.1", port), _message(), timeout=5, destinations=LOCAL)
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


def test_a_mail_server_on_a_denied_address_is_never_connected_to() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        for host in ("127.0.0.1", "localhost"):
            with pytest.raises(smtp.SmtpError) as failed:
                smtp.send(smtp.SmtpServer(host, port), _message(), timeout=5,
                          destinations=DEFAULT)
            assert failed.value.problem.startswith("destination refused: ")
            assert not failed.value.retryable
        with pytest.raises(BlockingIOError):
            listener.accept()  # no connection was ever made


def test_a_server_named_by_its_host_name_is_verified_for_that_name(server: SmtpServer) -> None:
    # The connection goes to the address checked; STARTTLS verifies the name.
    smtp.send(_to(server, host="localhost"), _message(), timeout=10, destinations=LOCAL)
    assert len(server.messages()) == 1


@contextlib.contextmanager
def _trickling_server(first: bytes, each: bytes) -> Iterator[int]:
    """A server on this host that sends ``first``, then ``each`` every 0.3 s (for
    30 s at most) to its first client; yields its port."""
    stop = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def trickle() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.sendall(first)
                for _ in range(100):
                    if stop.wait(0.3):
                        return
                    try:
                        connection.sendall(each)
                    except OSError:
                        return

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        try:
            yield listener.getsockname()[1]
        finally:
            stop.set()
            thread.join(timeout=5)


def _times_out(server: smtp.SmtpServer) -> None:
    """Sending to ``server`` with a 2 s timeout fails as a timeout within 5 s."""
    started = time.monotonic()
    with pytest.raises(smtp.SmtpError) as failed:
        smtp.send(server, _message(), timeout=2, destinations=LOCAL)
    assert time.monotonic() - started < 5
    assert failed.value.problem == "SMTP Timeout" and failed.value.retryable


def test_a_server_that_trickles_its_answers_is_cut_off_at_the_timeout() -> None:
    """smtplib's timeout bounds each read: a byte every 0.3 s held the sender's
    thread for as long as the server liked."""
    with _trickling_server(b"220", b"-") as port:
        _times_out(smtp.SmtpServer("127.0.0.1", port))


@contextlib.contextmanager
def _slow_handshake_server(directory: Path, starttls: bool) -> Iterator[tuple[int, str]]:
    """A mail server on this host whose TLS handshake ends 2.5 s into the exchange
    (greeting at 1.2 s; with ``starttls``, EHLO and STARTTLS answered at once), then
    trickles a byte every 0.3 s over TLS; yields its port and its CA."""
    ca, served = create_server_tls(directory, "slow-smtp", server_names=("localhost",),
                                   server_ips=("127.0.0.1",))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(served.cert), str(served.key))
    stop = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            connection, _ = listener.accept()
            try:
                if starttls:
                    if stop.wait(1.2):
                        return
                    connection.sendall(b"220 slow.example ESMTP\r\n")
                    for answer in (b"250-slow.example\r\n250 STARTTLS\r\n", b"220 go ahead\r\n"):
                        while not connection.recv(1024).endswith(b"\r\n"):
                            pass
                        connection.sendall(answer)
                    delay = 1.3
                else:
                    delay = 2.5
                if stop.wait(delay):
                    return
                secure = context.wrap_socket(connection, server_side=True)
                for _ in range(100):
                    if stop.wait(0.3):
                        return
                    secure.sendall(b"2")
            except OSError:
                return
            finally:
                connection.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield listener.getsockname()[1], ca.cert.read_text()
        finally:
            stop.set()
            thread.join(timeout=5)


@pytest.mark.parametrize("starttls", [True, False], ids=["starttls", "implicit-tls"])
def test_a_handshake_the_deadline_falls_in_is_cut_off_after_it(
        tmp_path: Path, starttls: bool) -> None:
    """Wrapping detaches the plain socket before the handshake: the watchdog, firing
    then, cut a socket gone, never fired again, and the answers trickled after the
    handshake held the thread (20 s and more)."""
    with _slow_handshake_server(tmp_path, starttls) as (port, ca_pem):
        _times_out(smtp.SmtpServer("127.0.0.1", port, implicit_tls=not starttls,
                                   ca_pem=ca_pem))


def test_the_timeout_holds_when_it_runs_out_before_the_connection_exists(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow name lookup (or a first address that never answers) took the whole
    timeout before smtplib had a socket for the watchdog to cut; the watchdog
    found none and never came back, and a trickled greeting then held the thread
    for as long as the server liked."""
    real_resolve = destinations.resolve

    def slow_resolve(host: str, port: int) -> list[str]:
        time.sleep(2.5)  # a resolver answering late: past the 2 s timeout
        return real_resolve(host, port)

    monkeypatch.setattr(destinations, "resolve", slow_resolve)
    with _trickling_server(b"2", b"2") as port:
        _times_out(smtp.SmtpServer("127.0.0.1", port))
