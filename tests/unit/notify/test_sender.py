"""The sender against a real HTTP server in this process: delivery, retries, backoff, timeouts."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from stackforge_operator import config
from stackforge_operator.devcluster.pki import create_server_tls
from stackforge_operator.notify import smtp
from stackforge_operator.notify.destinations import Destinations
from stackforge_operator.notify.sender import (
    Backoff,
    Delivery,
    HttpPost,
    Mail,
    Sender,
)
from tests.support.receiver import Receiver
from tests.support.smtp_server import USERNAME, SmtpServer

# The receivers here listen on this host, which the defaults refuse.
LOCAL = Destinations.parse(allowed="127.0.0.0/8 ::1/128")
FAST = Backoff(first=0.05, cap=1.0, jitter=lambda: 1.0)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def delivery(receiver: Receiver, path: str = "/hook/s3cr3t-token", n: int = 1) -> Delivery:
    return Delivery(HttpPost(receiver.url(path), json={"n": n}), label=f"test message {n}",
                    event="BackupFailed")


def run(sender: Sender, deliveries: list[Delivery], *, settle: float = 10.0) -> list[tuple[
        str, str]]:
    """Start the sender, submit from another thread (as reconciles do), wait until idle."""
    results: list[tuple[str, str]] = []

    async def main() -> None:
        sender._on_result = lambda event, result: results.append((event, result))
        await sender.start()
        try:
            await asyncio.to_thread(sender.submit, deliveries)
            await asyncio.sleep(0.05)
            await sender.idle(settle)
        finally:
            await sender.stop()

    asyncio.run(main())
    return results


def test_backoff_doubles_up_to_the_cap_and_honours_retry_after() -> None:
    backoff = Backoff(first=1.0, cap=10.0, jitter=lambda: 1.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert backoff.delay(1, retry_after=7.0) == 7.0
    assert backoff.delay(1, retry_after=3600.0) == 10.0
    jittered = Backoff(first=1.0, cap=10.0)
    assert all(0.75 <= jittered.delay(1) <= 1.0 for _ in range(50))


def test_the_default_attempts_outlast_a_receiver_away_for_a_quarter_of_an_hour() -> None:
    """Six attempts spanned 31 s: a webhook down for a minute lost every message."""
    def span(jitter: float) -> float:
        backoff = Backoff(first=config.NOTIFY_BACKOFF_SECONDS,
                          cap=config.NOTIFY_MAX_BACKOFF_SECONDS, jitter=lambda: jitter)
        return sum(backoff.delay(n) for n in range(1, config.NOTIFY_ATTEMPTS))

    assert span(0.75) > 15 * 60
    assert span(1.0) < 30 * 60


def test_delivers_json(receiver: Receiver) -> None:
    results = run(Sender(destinations=LOCAL, backoff=FAST),
                  [delivery(receiver, n=1), delivery(receiver, n=2)])
    got = receiver.requests()
    assert sorted(r.body["n"] for r in got) == [1, 2]
    assert all(r.method == "POST" and r.path == "/hook/s3cr3t-token" for r in got)
    assert got[0].headers["Content-Type"] == "application/json"
    assert sorted(results) == [("BackupFailed", "sent")] * 2


def test_server_errors_are_retried_with_growing_delays(receiver: Receiver) -> None:
    receiver.fail_next(3, 503)
    results = run(Sender(destinations=LOCAL, backoff=FAST, attempts=5), [delivery(receiver)])
    got = receiver.requests()
    assert len(got) == 4
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    # 0.05, 0.1, 0.2 s: each wait at least its backoff, which grows. (Only lower
    # bounds: on a busy machine any gap may run long.)
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095 and gaps[2] >= 0.195
    assert results == [("BackupFailed", "retried")] * 3 + [("BackupFailed", "sent")]


def test_gives_up_after_the_last_attempt(receiver: Receiver) -> None:
    receiver.fail_next(10, 500)
    results = run(Sender(destinations=LOCAL, backoff=FAST, attempts=3), [delivery(receiver)])
    assert len(receiver.requests()) == 3
    assert results[-1] == ("BackupFailed", "failed")


def test_client_errors_are_not_retried(receiver: Receiver) -> None:
    receiver.fail_next(1, 404)
    results = run(Sender(destinations=LOCAL, backoff=FAST, attempts=5), [delivery(receiver)])
    assert len(receiver.requests()) == 1 and results == [("BackupFailed", "failed")]


def test_a_url_httpx_cannot_parse_fails_once_counted_and_without_its_text(
        caplog: pytest.LogCaptureFixture) -> None:
    """httpx.InvalidURL is no HTTPError: it reached the worker's catch-all, its
    text in a traceback, and was never counted."""
    bad = Delivery(HttpPost("https://hooks.example.com/s3cr3t\x01token", json={}),
                   label="test message", event="BackupFailed")
    with caplog.at_level(logging.INFO):
        results = run(Sender(destinations=LOCAL, backoff=FAST, attempts=3), [bad])
    assert results == [("BackupFailed", "failed")]
    assert "s3cr3t" not in caplog.text and "Traceback" not in caplog.text


def test_a_receiver_that_trickles_its_answer_is_cut_off_at_the_timeout() -> None:
    """httpx's timeout bounds each read: a byte every half second kept an attempt
    going for minutes, and a worker all tenants share with it."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            while not stop.wait(0.5):
                try:
                    connection.sendall(b"x")
                except OSError:
                    return

    server = threading.Thread(target=trickle, daemon=True)
    server.start()
    try:
        port = listener.getsockname()[1]
        slow = Delivery(HttpPost(f"http://127.0.0.1:{port}/hook", json={}), label="slow",
                        event="BackupFailed")
        started = time.monotonic()
        results = run(Sender(destinations=LOCAL, backoff=FAST, attempts=1, timeout=2), [slow],
                      settle=20)
        assert results == [("BackupFailed", "failed")]
        assert time.monotonic() - started < 8
    finally:
        stop.set()
        listener.close()


def test_an_incidents_resolved_never_overtakes_its_opened_still_being_retried(
        receiver: Receiver) -> None:
    """Separate deliveries on retry timers of their own: with retries spanning
    minutes, "resolved" could reach a channel before "opened", leaving the
    incident looking open there. Another incident's messages do not wait."""
    receiver.fail_next(1, 503)

    def message(path: str, order: str) -> Delivery:
        return Delivery(HttpPost(receiver.url(path), json={}), label=path, event="BackupFailed",
                        order=order)

    run(Sender(destinations=LOCAL, backoff=FAST, attempts=3, workers=1), [
        message("/opened", "acme slack BackupFailed/nightly"),
        message("/resolved", "acme slack BackupFailed/nightly"),
        message("/other", "acme slack BackupStale/nightly")])
    answered = [r.path for r in receiver.requests() if r.status == 200]
    assert sorted(answered) == ["/opened", "/other", "/resolved"], answered
    assert answered.index("/opened") < answered.index("/resolved"), answered
    # The other incident went while the first one's "opened" waited for its retry.
    assert answered.index("/other") < answered.index("/opened"), answered


def test_429_waits_as_long_as_retry_after_says(receiver: Receiver) -> None:
    receiver.fail_next(1, 429, {"Retry-After": "1"})
    run(Sender(destinations=LOCAL, backoff=FAST, attempts=3), [delivery(receiver)])
    first, second = receiver.requests()
    assert second.at - first.at >= 0.95  # not the 0.05 s backoff


def test_a_hanging_receiver_times_out_and_does_not_hold_up_others(receiver: Receiver) -> None:
    with Receiver() as healthy:
        receiver.hang(20)
        started = time.monotonic()
        # The timeout is far above what the healthy delivery needs even on a busy
        # machine: that one answered before it proves nothing waited for the other.
        sender = Sender(destinations=LOCAL, backoff=FAST, attempts=1, timeout=4, workers=2)
        results: list[tuple[str, str]] = []

        async def main() -> None:
            sender._on_result = lambda event, result: results.append((event, result))
            await sender.start()
            sender.submit([delivery(receiver)])
            await asyncio.sleep(0.05)
            sender.submit([delivery(healthy, "/other", n=2)])
            # The healthy receiver is answered while the other one hangs.
            while not healthy.requests():
                await asyncio.sleep(0.01)
            assert time.monotonic() - started < 4
            await sender.idle(10)
            await sender.stop()

        asyncio.run(main())
        receiver.hang(0)
        # The hanging one was given up after its timeout, not its 20 s.
        assert time.monotonic() - started < 12
        assert sorted(results) == [("BackupFailed", "failed"), ("BackupFailed", "sent")]


def test_unreachable_receiver_is_retried_then_dropped() -> None:
    gone = Delivery(HttpPost("http://127.0.0.1:9/hook/s3cr3t-token", json={}),
                    label="to nowhere", event="DrillFailed")
    results = run(Sender(destinations=LOCAL, backoff=FAST, attempts=2, timeout=1), [gone])
    assert results == [("DrillFailed", "retried"), ("DrillFailed", "failed")]


def test_no_url_in_logs(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.fail_next(1, 500)
    run(Sender(destinations=LOCAL, backoff=FAST), [delivery(receiver)])
    gone = Delivery(HttpPost("http://127.0.0.1:9/hook/s3cr3t-token", json={}), label="nowhere",
                    event="DrillFailed")
    run(Sender(destinations=LOCAL, backoff=FAST, attempts=1), [gone])
    assert "test message 1" in caplog.text and "delivered" in caplog.text
    assert "s3cr3t-token" not in caplog.text
    assert "s3cr3t-token" not in repr(gone)


def test_submit_before_start_drops_with_a_warning(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    Sender(destinations=LOCAL).submit([delivery(receiver)])
    assert "dropped" in caplog.text and receiver.requests() == []


def test_stop_drops_pending_retries(receiver: Receiver) -> None:
    receiver.fail_next(1, 500)

    async def main() -> None:
        sender = Sender(destinations=LOCAL, backoff=Backoff(first=60, jitter=lambda: 1.0))
        await sender.start()
        sender.submit([delivery(receiver)])
        while not receiver.requests():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await sender.stop()
        assert time.monotonic() - started < 1

    asyncio.run(main())
    assert len(receiver.requests()) == 1


def test_a_form_with_an_authorization_header_as_sms_providers_take_it(
        receiver: Receiver) -> None:
    post = HttpPost(receiver.url("/2010-04-01/Accounts/AC1/Messages.json"),
                    form={"To": "+15550002222", "From": "+15550001111", "Body": "a b&c"},
                    headers={"Authorization": "Basic QUMxOnRva2Vu"})
    assert run(Sender(destinations=LOCAL, backoff=FAST),
               [Delivery(post, label="sms#1", event="VolumeFull")]) == [("VolumeFull", "sent")]
    [got] = receiver.requests()
    assert got.body == "To=%2B15550002222&From=%2B15550001111&Body=a+b%26c"
    assert got.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert got.headers["Authorization"] == "Basic QUMxOnRva2Vu"
    # The provider's keys (in fields or the header) stay out of repr, as URLs do.
    assert "QUMxOnRva2Vu" not in repr(post) and "+1555" not in repr(post)


def test_an_email_refused_for_now_is_sent_again() -> None:
    with SmtpServer("pw") as server:
        server.fail_next(1)  # 451
        message = EmailMessage()
        message["Subject"], message["From"], message["To"] = "s", "a@sf.io", "ops@sf.io"
        message.set_content("body")
        mail = Mail(smtp.SmtpServer(server.host, server.port, ca_pem=server.ca_pem,
                                    username=USERNAME, password="pw"), message)
        results = run(Sender(destinations=LOCAL, backoff=FAST),
                      [Delivery(mail, label="mail", event="BackupFailed")])
        assert results == [("BackupFailed", "retried"), ("BackupFailed", "sent")]
        [received] = server.messages()
        assert received.message["Subject"] == "s" and received.recipients == ["ops@sf.io"]


def test_a_webhook_on_a_denied_address_gets_nothing_and_is_not_retried(
        receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    """A tenant's URL may name this host (by address or by name), where nothing a
    tenant names should be reached from the operator's position."""
    caplog.set_level(logging.INFO)
    by_address = delivery(receiver)
    by_name = Delivery(HttpPost(receiver.url("/hook/s3cr3t-token", host="localhost"), json={}),
                       label="by name", event="BackupStale")
    results = run(Sender(backoff=FAST, attempts=5), [by_address, by_name])
    assert sorted(results) == [("BackupFailed", "failed"), ("BackupStale", "failed")]
    assert receiver.requests() == []
    assert "Traceback" not in caplog.text  # a refusal, not a bug
    assert "destination refused: 127.0.0.1 is in a denied network (127.0.0.0/8)" in caplog.text
    assert "s3cr3t-token" not in caplog.text


def test_a_webhook_by_name_is_verified_against_its_name_after_connecting_to_the_address(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard connects to the address it checked; TLS must still verify the
    certificate for the URL's name (this one names no address), and the request
    must carry it as its Host."""
    ca, served = create_server_tls(tmp_path, "hooks", server_names=("localhost",))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(served.cert), str(served.key))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.cert))  # httpx's default context reads it
    with Receiver(tls=context) as secure:
        post = Delivery(HttpPost(secure.url("/hook", host="localhost"), json={"n": 1}),
                        label="secure", event="BackupFailed")
        assert run(Sender(destinations=LOCAL, backoff=FAST, attempts=1), [post]) == [
            ("BackupFailed", "sent")]
        [received] = secure.requests()
        assert received.headers["Host"] == f"localhost:{secure.port}"
