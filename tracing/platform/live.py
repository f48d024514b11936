"""The one broadcast helper: everything pushed to browsers goes through `broadcast`.

Events are sent only after the surrounding transaction commits (so a browser never
sees what a rollback undid), from a background thread with its own event loop, so the
caller (an agent step) never waits on Redis or a slow browser.

Open notices: a deferred notice (`send_soon`, a span's "span.start") that was sent stays
current until it is cancelled (the span ended). The sender keeps each group's current
notices, with the text streamed into them (`span.text` events), in the cache (Redis)
before it sends what changed them, so a stream that joins the group and then reads
`open_notices` misses nothing: what it read is older than what it receives. The value
is replaced whole at each change, so the notices of a process that died disappear at
the next change (or after `OPEN_NOTICES_TTL`).
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.cache import cache
from django.db import transaction

from tracing.platform.logs import get_logger

log = get_logger(__name__)

OPS_GROUP = "ops"
OPEN_NOTICES_TTL = 3600  # seconds; rewritten at every change
OPEN_TEXT_MAX = 8000  # characters of streamed text kept with an open notice


def run_group(run_id: uuid.UUID | str) -> str:
    return f"run-{run_id}"


def session_group(session_id: uuid.UUID | str) -> str:
    return f"session-{session_id}"


# Every stream watches the groups its access depends on (tracing.platform.hub.AccessWatch):
# its person's, the API key's it came in with, the widget key's. `ACCESS_REVOKED` sent there
# (`access_revoke`: a demotion, a deactivation, a deleted or disabled key) ends them all.
ACCESS_REVOKED = "access.revoked"


def user_group(user_id: Any) -> str:
    return f"user-{user_id}"


def api_key_group(key_id: int) -> str:
    return f"api-key-{key_id}"


def widget_key_group(key_id: int) -> str:
    return f"widget-key-{key_id}"


def access_revoke(*, group: str) -> None:
    """End every stream whose access hangs on `group` (`user_group`, `api_key_group`,
    `widget_key_group`) once the current transaction commits."""
    broadcast(group, {"kind": ACCESS_REVOKED})


def _open_key(group: str) -> str:
    return f"agentops:live-open:{group}"


def open_notices(group: str) -> list[dict[str, Any]]:
    """The group's notices still current (spans open now), each with `text` streamed so far
    and `text_end` (how many characters were streamed in all)."""
    return list(cache.get(_open_key(group)) or [])


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
        self.announced: dict[str, str] = {}  # key -> group of deferred notices sent, not cancelled
        self.deferred_lock = threading.Lock()
        # The sender thread's own: current notices per group, text streamed per key.
        self.open: dict[str, dict[str, dict[str, Any]]] = {}
        self.texts: dict[str, tuple[str, int]] = {}
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
        if self.deferred or self.announced:
            with self.deferred_lock:
                if self.deferred.pop(key, None) is None and key in self.announced:
                    group = self.announced.pop(key)
                    self.queue.put((group, {"type": "live.closed", "key": key}))

    def _due(self) -> tuple[list[tuple[str, str, dict[str, Any]]], float | None]:
        """Deferred messages whose time has come (key, group, message), and how long until
        the next one."""
        now = time.monotonic()
        with self.deferred_lock:
            ready = []
            for key in [k for k, (at, _, _) in self.deferred.items() if at <= now]:
                _, group, message = self.deferred.pop(key)
                ready.append((key, group, message))
                self.announced[key] = group
            wait = min((at for at, _, _ in self.deferred.values()), default=None)
        return ready, None if wait is None else max(wait - now, 0.0)

    def _track(
        self, ready: list[tuple[str, str, dict[str, Any]]], items: list[tuple[str, dict[str, Any]]]
    ) -> None:
        """Keep the open notices current and store those of groups that changed."""
        changed = set()
        for key, group, message in ready:
            notice = dict(message["event"])
            text, end = self.texts.get(key, ("", 0))
            notice.update(text=text, text_end=end)
            self.open.setdefault(group, {})[key] = notice
            changed.add(group)
        for group, message in items:
            if message.get("type") == "live.closed":
                self.texts.pop(message["key"], None)
                if self.open.get(group, {}).pop(message["key"], None) is not None:
                    changed.add(group)
                continue
            event = message.get("event") or {}
            if event.get("kind") != "span.text":
                continue
            key = event["span_id"]
            text, _ = self.texts.get(key, ("", 0))
            chunk = str(event.get("text", ""))
            text += chunk[: max(OPEN_TEXT_MAX - len(text), 0)]
            self.texts[key] = (text, int(event.get("at", 0)) + len(chunk))
            current = self.open.get(group, {}).get(key)
            if current is not None:
                current["text"], current["text_end"] = self.texts[key]
                changed.add(group)
        if self.texts:
            with self.deferred_lock:  # text of spans that ended unannounced
                for key in [k for k in self.texts if k not in self.deferred]:
                    if key not in self.announced:
                        del self.texts[key]
        for group in changed:
            notices = list(self.open.get(group, {}).values())
            try:
                if notices:
                    cache.set(_open_key(group), notices, OPEN_NOTICES_TTL)
                else:
                    self.open.pop(group, None)
                    cache.delete(_open_key(group))
            except Exception:
                log.exception("live.open_notices_failed", group=group)

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
            self._track(ready, items)
            items = [item for item in items if item[1].get("type") != "live.closed"]
            sends = [(group, message) for _, group, message in ready]
            loop.run_until_complete(self._send(layer, [*sends, *items]))
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
    for captured in _captures:
        captured.append((group, event))
    _get_sender().put(group, {"type": "live.event", "group": group, "event": event})


_captures: list[list[tuple[str, dict[str, Any]]]] = []


@contextmanager
def capture_live_events() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Record, as (group, event) pairs in order, what this process sends while the block runs:
    a `broadcast` once its transaction commits, a `send_now` at once (deferred `send_soon`
    notices are not recorded). They are sent all the same. For tests: "this call sends
    exactly these events"."""
    captured: list[tuple[str, dict[str, Any]]] = []
    _captures.append(captured)
    try:
        yield captured
    finally:
        _captures.remove(captured)


def send_soon(key: str, group: str, event: dict[str, Any], *, delay: float) -> None:
    """Send `event` in `delay` seconds unless `cancel_soon(key)` is called first."""
    _get_sender().put_deferred(
        key, group, {"type": "live.event", "group": group, "event": event}, delay
    )


def cancel_soon(key: str) -> None:
    """Drop the deferred event, or if it was sent already, end it (see `open_notices`)."""
    if _sender is not None and _sender.pid == os.getpid():
        _sender.cancel_deferred(key)


def broadcast(group: str, event: dict[str, Any]) -> None:
    """Send `event` to everyone listening on `group` once the current transaction commits."""
    transaction.on_commit(lambda: send_now(group, event))


def wait_sent(timeout: float = 5.0) -> None:
    """Block until queued events are handed to the channel layer (tests, shutdown)."""
    if _sender is not None and _sender.pid == os.getpid():
        _sender.flush(timeout)
