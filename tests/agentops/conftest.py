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
