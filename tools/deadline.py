"""Time limits for Python tools, which run in the caller's process.

On the main thread (RQ jobs: the forking work horse and SimpleWorker alike) a SIGALRM timer
raises `ToolTimeout` inside the function where it is — in a `time.sleep`, a socket read or
pure Python — so its `finally` blocks and context managers run and its transactions roll
back; the run's connection stays the run's. RQ's own job alarm uses the same timer: it is
paused for the call and given back what remains (and fires first if it is due first).

Elsewhere (a web request thread: the tool page's "Try it") signals cannot be used: the
function runs on a helper thread with its own database connection; after the timeout the
caller goes on and the function finishes in the background, its result discarded.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TypeVar

from django.db import connections

from tracing.platform.failures import FailureClass

T = TypeVar("T")


class ToolTimeout(BaseException):
    """Raised inside a Python tool whose time is up. A BaseException, so that the tool's
    own `except Exception` cannot swallow it."""

    failure_class = FailureClass.TIMEOUT


def call_with_deadline(func: Callable[..., T], kwargs: dict[str, Any], *, seconds: float) -> T:
    """`func(**kwargs)`, or ToolTimeout once `seconds` have passed."""
    if threading.current_thread() is threading.main_thread():
        try:
            with _alarm(seconds):
                return func(**kwargs)
        except ToolTimeout:
            _drop_unusable_connections()
            raise
    return _on_helper_thread(func, kwargs, seconds)


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    previous = signal.getsignal(signal.SIGALRM)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, 0)  # the job's alarm: seconds left, or 0
    outer_first = bool(outer) and outer <= seconds and callable(previous)
    fired = []
    started = time.monotonic()

    def expire(signum: int, frame: FrameType | None) -> None:
        fired.append(True)
        if outer_first and callable(previous):
            previous(signum, frame)  # the job's own time is up first: its handler raises
        raise ToolTimeout(f"no result within {seconds:g} s")

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, outer if outer_first else seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer and not (outer_first and fired):
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 0.001))


def _drop_unusable_connections() -> None:
    """A query the timeout interrupted leaves its connection busy: close it, so the caller's
    next statement opens a fresh one instead of failing."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None and not connection.is_usable():
            connection.close()


def _on_helper_thread(func: Callable[..., T], kwargs: dict[str, Any], seconds: float) -> T:
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            outcome["value"] = func(**kwargs)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            connections.close_all()  # this thread's own connections
            done.set()

    threading.Thread(target=target, name="python-tool", daemon=True).start()
    if not done.wait(seconds):
        raise ToolTimeout(f"no result within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
