"""The test kit: what tests need again and again, written once.

- `until(predicate, seconds=...)` / `until_async(...)`: the one way to wait for something that
  happens elsewhere (a worker, a server, another thread). Polls `predicate` until it returns
  something true and returns that value; fails the test with `AssertionError` when time is up.
  A fixed `time.sleep` is only for letting time pass on purpose (proving that something did
  NOT happen, a lease running out), and says so in a comment.
- `api_key(user)` / `bearer(user_or_key)`: a real API key and the request headers carrying it.
- The fixtures in `tests/conftest.py`: `client_as` (a Django test client signed in by role or
  user), `workers` (more worker processes for a test, stopped after it) and the module-wide
  `worker` and `web` processes.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pytest

from agentops.testing.processes import FORKING_WORKER, Proc, child_env, start_worker

if TYPE_CHECKING:
    from agentops.models import User

T = TypeVar("T")

POLL_SECONDS = 0.02


def _failure(seconds: float, last: object, message: str | Callable[[], str]) -> AssertionError:
    said = message() if callable(message) else message
    return AssertionError(f"{said or 'not so'} after {seconds} s (last seen: {last!r})")


def until(
    predicate: Callable[[], T],
    *,
    seconds: float = 30.0,
    every: float = POLL_SECONDS,
    message: str | Callable[[], str] = "",
) -> T:
    """`predicate()`'s first true value, polled every `every` seconds for up to `seconds`.
    Exceptions from `predicate` are not swallowed: a predicate that can raise before its moment
    (a row not there yet) should return a false value instead."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _failure(seconds, value, message)
        time.sleep(every)


async def until_async(
    predicate: Callable[[], T] | Callable[[], Awaitable[T]],
    *,
    seconds: float = 30.0,
    every: float = POLL_SECONDS,
    message: str | Callable[[], str] = "",
) -> T:
    """`until` inside an event loop: `predicate` may be a plain or an async function, and the
    loop keeps running (other tasks make progress) between polls."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        polled = predicate()
        value = cast("T", await polled if inspect.isawaitable(polled) else polled)
        if value:
            return value
        if loop.time() >= deadline:
            raise _failure(seconds, value, message)
        await asyncio.sleep(every)


def api_key(user: User, name: str = "tests") -> str:
    """A new real API key of `user` (the raw secret, shown once)."""
    from agentops.auth import api_key_create

    return api_key_create(user=user, name=name)[1]


def bearer(who: User | str) -> dict[str, str]:
    """Django test client headers carrying a bearer key: `who`'s new key, or the key given."""
    key = who if isinstance(who, str) else api_key(who)
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def worker_fixture(
    *,
    name: str = "worker",
    worker_class: str = FORKING_WORKER,
    queues: tuple[str, ...] = ("maintenance", "runs"),
    **env: str,
) -> Any:
    """A module-scoped fixture running one RQ worker process on the test database, started
    when a test of the module first asks for it and stopped when the module ends. `env` is
    added to the worker's environment (settings of its own, say). Assign it in a test module,
    under the name its tests ask for: `worker = worker_fixture(BREAKER_MIN_CALLS="2")`."""

    @pytest.fixture(scope="module")
    def fixture(django_db_setup: None) -> Iterator[Proc]:
        proc = start_worker(child_env(**env), name=name, worker_class=worker_class, queues=queues)
        yield proc
        proc.stop()

    return fixture


class Workers:
    """Worker processes a test starts itself (to kill them, say); the fixture stops whatever is
    left of them after the test."""

    def __init__(self) -> None:
        self.started: list[Proc] = []

    def start(
        self,
        *,
        name: str = "worker",
        worker_class: str = FORKING_WORKER,
        queues: tuple[str, ...] = ("maintenance", "runs"),
        env: dict[str, str] | None = None,
    ) -> Proc:
        proc = start_worker(
            env if env is not None else child_env(),
            name=name,
            worker_class=worker_class,
            queues=queues,
        )
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            proc.stop()
