"""The one broadcast helper: everything pushed to browsers goes through `broadcast`.

Events are sent only after the surrounding transaction commits (so a browser never
sees what a rollback undid), from a background thread with its own event loop, so the
caller (an agent step) never waits on Redis or a slow browser.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
from typing import Any

from django.db import transaction

from tracing.logs import get_logger

log = get_logger(__name__)

OPS_GROUP = "ops"


def run_group(run_id: Any) -> str:
    return f"run-{run_id}"


def session_group(session_id: Any) -> str:
    return f"session-{session_id}"


class _Sender:
    """A daemon thread draining a queue of (group, message) into the channel layer.

    Deferred messages (`send_soon`) wait `delay` seconds and are dropped if cancelled
    first: a span's "started" notice is only worth sending for a span still open by then.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.queue: queue.SimpleQueue[tuple[str, dict[str, Any]] | None] = queue.SimpleQueue()
        self.queued = 0
        self.sent = 0
        self.progress = threading.Condition()
        self.deferred: dict[str, tuple[float, str, dict[str, Any]]] = {}
        self.deferred_lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="agentops-live", daemon=True)
        self.thread.start()

    def put(self, group: str, message: dict[str, Any]) -> None:
        with self.progress:
            self.queued += 1
        self.queue.put((group, message))

    def put_deferred(self, key: str, group: str, message: dict[str, Any], delay: float) -> None:
        with self.deferred_lock:
            wake = not self.deferred
            self.deferred[key] = (time.monotonic() + delay, group, message)
        if wake:
            self.queue.put(None)  # the thread may be waiting without a timeout

    def cancel_deferred(self, key: str) -> None:
        if self.deferred:
            with self.deferred_lock:
                self.deferred.pop(key, None)

    def _due(self) -> tuple[list[tuple[str, dict[str, Any]]], float | None]:
        """Deferred messages whose time has come, and how long until the next one."""
        now = time.monotonic()
        with self.deferred_lock:
            due = [k for k, (at, _, _) in self.deferred.items() if at <= now]
            ready = [self.deferred.pop(k)[1:] for k in due]
            wait = min((at for at, _, _ in self.deferred.values()), default=None)
        return ready, None if wait is None else max(wait - now, 0.0)

    def _run(self) -> None:
        # One event loop for the thread's life: the channel layer keeps its Redis connections
        # per loop. A daemon thread blocked in queue.get() never holds up interpreter exit.
        from channels.layers import get_channel_layer

        loop = asyncio.new_event_loop()
        layer = get_channel_layer()
        while True:
            ready, wait = self._due()
            items: list[tuple[str, dict[str, Any]]] = []
            if not ready:
                try:
                    first = self.queue.get(timeout=wait)
                except queue.Empty:
                    continue
                if first is not None:
                    items.append(first)
            while True:  # drain what else waits: one loop entry for the lot
                try:
                    more = self.queue.get_nowait()
                except queue.Empty:
                    break
                if more is not None:
                    items.append(more)
            loop.run_until_complete(self._send(layer, [*ready, *items]))
            with self.progress:
                self.sent += len(items)
                self.progress.notify_all()

    @staticmethod
    async def _send(layer: Any, items: list[tuple[str, dict[str, Any]]]) -> None:
        # A group's events that queued together go as one `live.batch` message, in order:
        # each group_send costs Redis round trips, and a step queues several events at once.
        batches: dict[str, list[dict[str, Any]]] = {}
        for group, message in items:
            batches.setdefault(group, []).append(message["event"])
        for group, events in batches.items():
            message = (
                {"type": "live.event", "group": group, "event": events[0]}
                if len(events) == 1
                else {"type": "live.batch", "group": group, "events": events}
            )
            try:
                await layer.group_send(group, message)
            except Exception:
                log.exception("live.broadcast_failed", group=group)

    def flush(self, timeout: float) -> bool:
        with self.progress:
            target = self.queued
            return self.progress.wait_for(lambda: self.sent >= target, timeout)


_sender: _Sender | None = None
_sender_lock = threading.Lock()


def _get_sender() -> _Sender:
    global _sender
    if _sender is None or _sender.pid != os.getpid():  # a forked child needs its own thread
        with _sender_lock:
            if _sender is None or _sender.pid != os.getpid():
                _sender = _Sender()
    return _sender


def send_now(group: str, event: dict[str, Any]) -> None:
    """Queue an event for the group right away (no transaction to wait for)."""
    _get_sender().put(group, {"type": "live.event", "group": group, "event": event})


def send_soon(key: str, group: str, event: dict[str, Any], *, delay: float) -> None:
    """Send `event` in `delay` seconds unless `cancel_soon(key)` is called first."""
    _get_sender().put_deferred(
        key, group, {"type": "live.event", "group": group, "event": event}, delay
    )


def cancel_soon(key: str) -> None:
    if _sender is not None and _sender.pid == os.getpid():
        _sender.cancel_deferred(key)


def broadcast(group: str, event: dict[str, Any]) -> None:
    """Send `event` to everyone listening on `group` once the current transaction commits."""
    transaction.on_commit(lambda: send_now(group, event))


def wait_sent(timeout: float = 5.0) -> None:
    """Block until queued events are handed to the channel layer (tests, shutdown)."""
    if _sender is not None and _sender.pid == os.getpid():
        _sender.flush(timeout)
