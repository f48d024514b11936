from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress

import pytest

from tests.kit import until

PACKAGE_WAIT_SECONDS = 20


@pytest.fixture(autouse=True)
def _handoff_packages_written(request: pytest.FixtureRequest) -> Iterator[None]:
    """A handoff's package is written by a job of its own after the run ends; a test must not
    end while that job still writes, or the database flush that follows it deadlocks."""
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or bool(
        marker and marker.kwargs.get("transaction")
    )
    if not transactional:
        yield
        return
    # The database fixture is set up first, so it is torn down (flushed) after this wait.
    request.getfixturevalue("_django_db_helper" if marker else "transactional_db")
    yield
    from agentops.models import Handoff

    with suppress(AssertionError):  # at most that long: some handoffs never get a package
        until(lambda: not Handoff.objects.filter(summary="").exists(), seconds=PACKAGE_WAIT_SECONDS)
