"""Write-behind for bookkeeping that must not hold up its caller (recall's access counts and
provenance rows, `memory.services.memory_recall`).

`DeferredWriter.add` queues items and returns at once; one writer thread per process
gathers them for GATHER_SECONDS after the first (or until BATCH_MAX wait) and hands them
all to `write` in one call (one batched statement), on a database connection of its own:
many recalls at once cost one write, not one each.

When it lands: normally within GATHER_SECONDS (50 ms) plus one write after `add`;
`flush()` waits until everything added before it is written (at interpreter exit too, and
it is what a forking worker's horse must call before `os._exit`, which runs no exit
handler). A write that fails is logged and its items dropped: this is bookkeeping, and the
alternative is retrying against a database that is away.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from django.db import connection

from tracing.platform.logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")

FLUSH_TIMEOUT_SECONDS = 10.0
# How long the writer gathers items after the first one before writing them (unless
# BATCH_MAX are waiting or someone flushes): long enough that a burst of recalls shares one
# write, and that the writer's thread does not compete for the GIL with every recall.
GATHER_SECONDS = 0.05
BATCH_MAX = 500


class DeferredWriter(Generic[T]):
    def __init__(
        self,
        *,
        name: str,
        write: Callable[[list[T]], None],
        gather_seconds: float = GATHER_SECONDS,
        batch_max: int = BATCH_MAX,
    ) -> None:
        self.name = name
        self.write = write
        self.gather_seconds = gather_seconds
        self.batch_max = batch_max
        self._reset()
        os.register_at_fork(after_in_child=self._reset)
        atexit.register(self.flush)

    def _reset(self) -> None:
        # In a forked child: the parent's thread and lock are not ours; its items are its own.
        self._cond = threading.Condition()
        self._pending: list[T] = []
        self._added = 0  # items ever added
        self._done = 0  # items written (or dropped after a failed write)
        self._thread: threading.Thread | None = None
        self._flushing = 0  # callers waiting in flush(): write without gathering

    def add(self, items: list[T]) -> None:
        if not items:
            return
        with self._cond:
            waiting = len(self._pending)
            self._pending.extend(items)
            self._added += len(items)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name=f"deferred-{self.name}", daemon=True
                )
                self._thread.start()
            if waiting == 0 or len(self._pending) >= self.batch_max:
                self._cond.notify_all()

    def flush(self, timeout: float = FLUSH_TIMEOUT_SECONDS) -> bool:
        """Wait until everything added so far is written; False if that took over `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._added
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._done < target:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._thread is None or not self._thread.is_alive():
                        return False
                    self._cond.wait(left)
                return True
            finally:
                self._flushing -= 1

    @property
    def pending(self) -> int:
        with self._cond:
            return self._added - self._done

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                gather_until = time.monotonic() + self.gather_seconds
                while len(self._pending) < self.batch_max and not self._flushing:
                    left = gather_until - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch, self._pending = self._pending, []
            try:
                self.write(batch)
            except Exception as exc:  # logged; the thread must live on
                log.warning(
                    "memory.deferred_write_failed",
                    writer=self.name,
                    items=len(batch),
                    error=str(exc).strip()[:300],
                )
                connection.close()
            else:
                # A pooled connection goes back to the pool; a persistent one stays open.
                connection.close_if_unusable_or_obsolete()
            with self._cond:
                self._done += len(batch)
                self._cond.notify_all()
