from __future__ import annotations

import pytest

from tests.factories import AgentFactory


@pytest.fixture
def agent(db):  # type: ignore[no-untyped-def]
    return AgentFactory()


@pytest.fixture
def other_agent(db):  # type: ignore[no-untyped-def]
    return AgentFactory()
