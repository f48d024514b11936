from collections.abc import Iterator

import pytest

from agentops.testing.processes import Proc, child_env, start_worker


@pytest.fixture(scope="module")
def worker(django_db_setup) -> Iterator[Proc]:  # type: ignore[no-untyped-def]
    """This module's own worker, stopped when it ends: the suite's shared worker (started by
    the first test asking for it) would otherwise be alive, and take runs, during the
    runtime's crash tests, which collect after this folder and kill a worker of their own."""
    proc = start_worker(child_env(), name="openai-worker")
    yield proc
    proc.stop()
