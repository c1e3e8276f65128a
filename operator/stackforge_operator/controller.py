"""Runs tenant reconciles from a work queue, fed by watch events (see workqueue.py)."""

from __future__ import annotations

import asyncio
import copy
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from stackforge_operator import config
from stackforge_operator.reconcile import tenant
from stackforge_operator.workqueue import WorkQueue

logger = logging.getLogger(__name__)


class TenantController:
    """The latest body of every tenant, and the queue that reconciles them."""

    def __init__(self, workers: int = config.RECONCILE_WORKERS) -> None:
        self._bodies: dict[str, dict[str, Any]] = {}
        # The kubernetes client blocks: reconciles run in these threads.
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tenant")
        self.queue = WorkQueue(self._reconcile, workers=workers)

    def start(self) -> None:
        self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def observed(self, name: str, body: dict[str, Any]) -> None:
        self._bodies[name] = copy.deepcopy(body)
        self.queue.add(name)

    def deleted(self, name: str) -> None:
        self._bodies.pop(name, None)
        self.queue.forget(name)

    def poke(self, name: str) -> None:
        """A child changed: look at its tenant again."""
        if name in self._bodies:
            self.queue.add(name)

    async def _reconcile(self, name: str) -> float | None:
        body = self._bodies.get(name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(self._executor, tenant.reconcile, body)
        except kopf.TemporaryError as error:
            logger.info("tenant %s: %s; retrying in %ss", name, error, error.delay)
            return float(error.delay or config.RETRY_SECONDS)
        except kopf.PermanentError as error:
            logger.error("tenant %s: %s", name, error)
            return tenant.STALLED_SECONDS
        latest = outcome.latest
        current = self._bodies.get(name)
        # Keep the status we just wrote, unless a newer event replaced the body meanwhile.
        if latest is not None and current is body:
            self._bodies[name] = latest
        return outcome.requeue_after
