"""The local runtime: what the Functions host does in Azure, done by threads on one machine.

Workers receive jobs (site checks, release summaries) from the job queue and run the same service
function as the Service Bus trigger; a dead-letter worker runs the dead-letter handler; a timer thread runs the
sweeper (and, under ``acrsync dev``, another reads what runs at each site between sweeps). Settlement mirrors
the host: success completes, a transient error abandons (the queue redelivers, then dead-letters), a malformed
job is dead-lettered at once with its reason.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

from shared.bootstrap import Services
from shared.domain.messages import decode_job
from shared.errors import AcrSyncError, InvalidInput, TransientError
from shared.logs import log_context
from shared.ports import ReceivedMessage
from shared.services.jobs import run_job
from shared.services.site_check import record_dead_letter
from shared.services.sweeper import sweep
from shared.services.workloads import observe_sites

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuntimeOptions:
    workers: int = 4
    poll_seconds: float = 0.5
    sweep_every: timedelta = timedelta(minutes=5)
    # How often what runs at each site is read between sweeps (acrsync dev); None: with the sweep only.
    observe_every: timedelta | None = None


class LocalRuntime:
    def __init__(self, services: Services, options: RuntimeOptions | None = None) -> None:
        self.services = services
        self.options = options or RuntimeOptions()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- one step at a time (tests, benchmarks) ------------------------------------------------
    def process_available(self, *, limit: int = 10_000) -> int:
        """Handle every job and dead letter visible now, on the calling thread. Returns how many."""
        handled = 0
        while handled < limit:
            batch = self.services.queue.receive_messages(max_count=50)
            dead = self.services.queue.receive_messages(max_count=50, dead_letter=True)
            if not batch and not dead:
                return handled
            for message in batch:
                self.handle_job(message)
            for message in dead:
                self.handle_dead_letter(message)
            handled += len(batch) + len(dead)
        return handled

    def handle_job(self, message: ReceivedMessage) -> None:
        queue = self.services.queue
        with log_context(message_id=message.message_id, delivery_count=message.delivery_count):
            try:
                job = decode_job(message.body)
            except InvalidInput as exc:
                logger.warning("dead-lettering a message that is not a job: %s", exc.code)
                queue.dead_letter_message(message, reason=exc.code, description=exc.detail)
                return
            try:
                run_job(self.services, job)
            except TransientError as exc:
                logger.warning("job failed transiently (%s); the queue will redeliver", type(exc).__name__)
                queue.abandon_message(message)
                return
            except AcrSyncError as exc:
                logger.error("job failed permanently (%s); dead-lettering", type(exc).__name__)
                queue.dead_letter_message(message, reason=type(exc).__name__, description=str(exc)[:500])
                return
            except Exception:
                logger.exception("job crashed; the queue will redeliver")
                queue.abandon_message(message)
                return
            queue.complete_message(message)

    def handle_dead_letter(self, message: ReceivedMessage) -> None:
        with log_context(message_id=message.message_id):
            try:
                record_dead_letter(
                    self.services, message.body, message.dead_letter_reason or "", message.dead_letter_description or ""
                )
            except TransientError:
                self.services.queue.abandon_message(message)
                return
            self.services.queue.complete_message(message)

    # -- background threads (acrsync dev) ------------------------------------------------------
    def start(self) -> None:
        for index in range(self.options.workers):
            self._spawn(f"acrsync-worker-{index}", self._work)
        self._spawn("acrsync-dead-letters", self._drain_dead_letters)
        self._spawn("acrsync-sweeper", self._sweep_periodically)
        if self.options.observe_every is not None:
            self._spawn("acrsync-observer", self._observe_periodically)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking work; a job in progress finishes (or its lock expires and it is redelivered)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def _spawn(self, name: str, target: object) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                # One at a time, as a Service Bus session trigger hands them: a message taken but
                # not yet handled would wait behind a slow site, and so would its own site.
                for message in self.services.queue.receive_messages(max_count=1, max_wait=self.options.poll_seconds):
                    self.handle_job(message)
            except AcrSyncError as exc:
                logger.warning("worker could not receive: %s", type(exc).__name__)
                self._stop.wait(self.options.poll_seconds)

    def _drain_dead_letters(self) -> None:
        while not self._stop.is_set():
            try:
                for message in self.services.queue.receive_messages(
                    max_count=10, max_wait=self.options.poll_seconds, dead_letter=True
                ):
                    self.handle_dead_letter(message)
            except AcrSyncError as exc:
                logger.warning("dead-letter worker could not receive: %s", type(exc).__name__)
                self._stop.wait(self.options.poll_seconds)

    def _observe_periodically(self) -> None:
        assert self.options.observe_every is not None  # started only then
        while not self._stop.wait(self.options.observe_every.total_seconds()):
            try:
                observe_sites(self.services)
            except AcrSyncError as exc:
                logger.warning("observing sites failed: %s", type(exc).__name__)

    def _sweep_periodically(self) -> None:
        while not self._stop.wait(self.options.sweep_every.total_seconds()):
            try:
                sweep(self.services)
            except AcrSyncError as exc:
                logger.warning("sweep failed: %s", type(exc).__name__)
