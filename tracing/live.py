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
    """A daemon thread draining a queue of (group, message) into the channel layer."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.queue: queue.SimpleQueue[tuple[str, dict[str, Any]]] = queue.SimpleQueue()
        self.queued = 0
        self.sent = 0
        self.progress = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="agentops-live", daemon=True)
        self.thread.start()

    def put(self, group: str, message: dict[str, Any]) -> None:
        with self.progress:
            self.queued += 1
        self.queue.put((group, message))

    def _run(self) -> None:
        # One event loop for the thread's life: the channel layer keeps its Redis connections
        # per loop. A daemon thread blocked in queue.get() never holds up interpreter exit.
        from channels.layers import get_channel_layer

        loop = asyncio.new_event_loop()
        layer = get_channel_layer()
        while True:
            group, message = self.queue.get()
            try:
                loop.run_until_complete(layer.group_send(group, message))
            except Exception:
                log.exception("live.broadcast_failed", group=group)
            with self.progress:
                self.sent += 1
                self.progress.notify_all()

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
    _get_sender().put(group, {"type": "live.event", "event": event})


def broadcast(group: str, event: dict[str, Any]) -> None:
    """Send `event` to everyone listening on `group` once the current transaction commits."""
    transaction.on_commit(lambda: send_now(group, event))


def wait_sent(timeout: float = 5.0) -> None:
    """Block until queued events are handed to the channel layer (tests, shutdown)."""
    if _sender is not None and _sender.pid == os.getpid():
        _sender.flush(timeout)
