from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def services_folder(monkeypatch) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """An empty data folder for embedded services of a test's own. Not under pytest's tmp_path:
    Postgres runs as another user, and every pytest session makes its base folder private."""
    folder = Path(tempfile.mkdtemp(prefix="svc-", dir=os.environ["AGENTOPS_VAR_DIR"])) / "v"
    monkeypatch.setenv("AGENTOPS_VAR_DIR", str(folder))
    yield folder
    shutil.rmtree(folder.parent, ignore_errors=True)


@pytest.fixture
def tooled_agent(dev_agent):  # type: ignore[no-untyped-def]
    """The dev agent with the test tools and room for ten steps: the agent the crash, outage
    and concurrency tests drive through real workers."""
    from tests.agentops.runtime.helpers import agent_with_python_tools

    return agent_with_python_tools(dev_agent, max_steps=10)
