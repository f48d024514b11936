"""The crash-test tools run wherever the settings point, with or without AGENTOPS_VAR_DIR."""

from __future__ import annotations

import json
import uuid

import pytest

from agentops.testing.tools import side_effects_log
from tools.executors import PythonExecutor, ToolContext
from tools.models import ToolDefinition


@pytest.mark.parametrize("name", ["slow_lookup", "side_effect"])
def test_it_logs_side_effects_in_the_configured_data_folder(name, settings, tmp_path, monkeypatch):
    monkeypatch.delenv("AGENTOPS_VAR_DIR")  # as under `make run`, where it defaults to ./var
    settings.VAR_DIR = tmp_path
    context = ToolContext(call_id="call_1", run_id=uuid.uuid4(), step=3)
    result = PythonExecutor().execute(
        ToolDefinition(name=name, kind="python"), {"label": "a", "seconds": 0}, context
    )
    assert result.content in ("found a", "changed a")
    assert side_effects_log() == tmp_path / "side_effects.log"
    (line,) = side_effects_log().read_text().splitlines()
    assert json.loads(line)["key"] == context.idempotency_key
