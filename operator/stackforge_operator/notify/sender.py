"""Deliver messages in the background: HTTP POSTs (httpx) and emails (SMTP), bounded
retries with backoff, timeouts.

Reconciles run in threads and must never wait for a receiver: they only
:meth:`Sender.submit`, which hands the messages to the event loop and
returns at once. A few worker tasks post them; a failed attempt is put back
on the queue after its backoff (a timer, not a sleeping worker), so a slow
or failing receiver costs at most one worker for one timeout at a time.

A webhook URL is a credential: it never appears in a log line. Only the
delivery's ``label`` (tenant, channel name, incident, state) is logged, and
httpx's own request log (which prints URLs) is silenced.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import httpx

from stackforge_operator.notify import smtp
from stackforge_operator.notify.destinations import DEFAULT, DestinationRefusedError, Destinations
from stackforge_operator.notify.guarded_transport import guarded_transport
from stackforge_operator.retry_after import retry_after_seconds

logger = logging.getLogger(__name__)

# Statuses worth another attempt: the receiver may recover by itself.
RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class HttpPost:
    """A POST of JSON (``json``) or of a form (``form``)."""

    url: str = field(repr=False)  # a credential: kept out of repr and logs
    json: Mapping[str, Any] | None = None
    # A provider's fields may hold its API keys; headers its Authorization.
    form: Mapping[str, str] | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Mail:
    """An email, and the SMTP server to hand it to."""

    server: smtp.SmtpServer
    message: EmailMessage


@dataclass(frozen=True)
class Delivery:
    """One message to one channel."""

    target: HttpPost | Mail
    label: str  # safe to log: "tenant acme slack BackupFailed/nightly opened"
    event: str
    # Deliveries of one key go one after another, in the order submitted: an
    # incident's "resolved" never overtakes its "opened" still being retried on
    # the same channel (retries span many minutes). None: no order.
    order: str | None = None


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``first * 2**(attempt-1)``, capped, with jitter."""

    first: float = 1.0
    cap: float = 300.0
    # Spreads retries of many messages to one recovering receiver; tests pass 1.0.
    jitter: Callable[[], float] = field(default=lambda: random.uniform(0.75, 1.0))  # noqa: S311

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None:
            # The receiver said when (429/503); honour it, within the cap.
            return min(max(retry_after, 0.0), self.cap)
        factor: float = self.jitter()
        return float(min(self.first * 2 ** (attempt - 1), self.cap) * factor)


# (event, result) -> None, with result one of "sent", "retried", "failed".
ResultHook = Callable[[str, str], None]


class Sender:
    """A queue of deliveries and the tasks that post them. Start and stop on one loop."""

    def __init__(
        self,
        *,
        workers: int = 4,
        timeout: float = 10.0,
        attempts: int = 6,
        backoff: Backoff | None = None,
        on_result: ResultHook | None = None,
        destinations: Destinations = DEFAULT,
    ) -> None:
        self._workers = workers
        self._timeout = timeout
        self._attempts = max(1, attempts)
        self._backoff = backoff or Backoff()
        self._on_result = on_result
        self._destinations = destinations
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[Delivery, int]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._client: httpx.AsyncClient | None = None
        self._busy = 0
        # Per order key with a delivery under way: those waiting for it (the loop's only).
        self._lines: dict[str, collections.deque[Delivery]] = {}

    async def start(self) -> None:
        for noisy in ("httpx", "httpcore"):
            # httpx logs every request's full URL at INFO: a credential here.
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout), follow_redirects=False,
            transport=guarded_transport(self._destinations),
            headers={"User-Agent": "stackforge-operator"})
        self._tasks = [asyncio.create_task(self._work(), name=f"notify-{n}")
                       for n in range(self._workers)]

    def submit(self, deliveries: Iterable[Delivery]) -> None:
        """Queue deliveries; callable from any thread, never blocks."""
        loop, queue = self._loop, self._queue
        if loop is None or queue is None or loop.is_closed():
            for delivery in deliveries:
                logger.warning("notification %s dropped: the sender is not running",
                               delivery.label)
            return
        for delivery in deliveries:
            try:
                loop.call_soon_threadsafe(self._enqueue, delivery)
            except RuntimeError:  # the loop closed meanwhile (shutdown)
                logger.warning("notification %s dropped: the sender stopped", delivery.label)

    def _enqueue(self, delivery: Delivery) -> None:
        """Queue ``delivery``, or line it up behind one of its order key under way."""
        assert self._queue is not None
        if delivery.order is not None:
            if delivery.order in self._lines:
                self._lines[delivery.order].append(delivery)
                return
            self._lines[delivery.order] = collections.deque()
        self._queue.put_nowait((delivery, 1))

    def _finished(self, delivery: Delivery) -> None:
        """``delivery`` is done with (sent, or given up): the next of its key goes."""
        if delivery.order is None or self._queue is None:
            return
        line = self._lines.get(delivery.order)
        if line:
            self._queue.put_nowait((line.popleft(), 1))
        else:
            self._lines.pop(delivery.order, None)

    async def idle(self, timeout: float = 30.0) -> None:
        """Wait until nothing is queued, in flight or waiting for a retry (for tests)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._queue is not None and (not self._queue.empty() or self._busy
                                           or self._timers):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("notifications still pending")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop now: queued messages and pending retries are dropped (with a log line)."""
        for timer in self._timers:
            timer.cancel()
        pending = len(self._timers) + (self._queue.qsize() if self._queue else 0) + sum(
            len(line) for line in self._lines.values())
        self._timers.clear()
        self._lines.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if pending:
            logger.warning("%d notifications not delivered at shutdown", pending)

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            delivery, attempt = await self._queue.get()
            self._busy += 1
            finished = True
            try:
                finished = await self._attempt(delivery, attempt)
            except Exception:  # a bug must not kill the worker
                logger.exception("notification %s: unexpected error", delivery.label)
            finally:
                if finished:
                    self._finished(delivery)
                self._busy -= 1

    async def _post(self, post: HttpPost) -> tuple[str | None, bool, float | None]:
        """(problem or None when delivered, retryable, the receiver's Retry-After)."""
        assert self._client is not None
        try:
            # httpx's timeout bounds each read, not the request: a receiver that
            # trickles its answer a byte at a time held a worker (of the few all
            # tenants share) for as long as it liked.
            async with asyncio.timeout(self._timeout):
                response = await self._client.post(
                    post.url, json=dict(post.json) if post.json is not None else None,
                    data=dict(post.form) if post.form is not None else None,
                    headers=dict(post.headers))
        except TimeoutError:
            return "Timeout", True, None
        except DestinationRefusedError as refused:
            # The address (never the URL) says which setting to look at.
            return f"destination refused: {refused}", False, None
        except httpx.HTTPError as error:
            # The exception's text can carry the URL: log its type only.
            return type(error).__name__, True, None
        except httpx.InvalidURL:
            # Not an HTTPError: it reached the worker's catch-all, its text (part of
            # the URL) in a traceback, and was never counted as failed. It does not
            # mend itself: no retry.
            return "InvalidURL", False, None
        if response.is_success:
            return None, False, None
        retry_after = None
        if response.status_code in (429, 503):
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        return f"HTTP {response.status_code}", response.status_code in RETRYABLE, retry_after

    async def _mail(self, mail: Mail) -> tuple[str | None, bool, float | None]:
        # smtplib blocks: a thread of the loop's executor, bounded by the timeout.
        try:
            await asyncio.to_thread(smtp.send, mail.server, mail.message, self._timeout,
                                    self._destinations)
        except smtp.SmtpError as failure:
            return failure.problem, failure.retryable, None
        return None, False, None

    async def _attempt(self, delivery: Delivery, attempt: int) -> bool:
        """One attempt; whether the delivery is done with (False: a retry is due)."""
        target = delivery.target
        problem, retryable, retry_after = await (
            self._mail(target) if isinstance(target, Mail) else self._post(target))
        if problem is None:
            logger.info("notification %s delivered (attempt %d)", delivery.label, attempt)
            self._report(delivery, "sent")
            return True
        if not retryable or attempt >= self._attempts:
            logger.error("notification %s failed after %d attempts: %s",
                         delivery.label, attempt, problem)
            self._report(delivery, "failed")
            return True
        delay = self._backoff.delay(attempt, retry_after)
        logger.warning("notification %s: attempt %d failed (%s); retrying in %.1fs",
                       delivery.label, attempt, problem, delay)
        self._report(delivery, "retried")
        self._retry_later(delivery, attempt + 1, delay)
        return False

    def _retry_later(self, delivery: Delivery, attempt: int, delay: float) -> None:
        assert self._loop is not None and self._queue is not None
        queue = self._queue

        def due() -> None:
            self._timers.discard(timer)
            queue.put_nowait((delivery, attempt))

        timer = self._loop.call_later(delay, due)
        self._timers.add(timer)

    def _report(self, delivery: Delivery, result: str) -> None:
        if self._on_result is not None:
            self._on_result(delivery.event, result)
