"""The crash-test tools run wherever the settings point, with or without AGENTOPS_VAR_DIR."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from agentops.testing.processes import PROJECT_DIR
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


def registered_in(settings_module: str) -> tuple[list[str], list[str]]:
    """The Python tools and RQ queues a fresh process on `settings_module` has."""
    script = (
        "import json, django; django.setup(); "
        "from django.conf import settings; from tools.registry import registered_tools; "
        "print(json.dumps([sorted(registered_tools()), sorted(settings.RQ_QUEUES)]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_DIR,
        env=dict(os.environ, DJANGO_SETTINGS_MODULE=settings_module),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    tools, queues = json.loads(done.stdout.strip().splitlines()[-1])
    return tools, queues


def test_it_registers_the_test_tools_only_under_the_test_settings():
    tools, queues = registered_in("agentops.settings")
    assert "remember" in tools and "runs" in queues
    assert not {"side_effect", "slow_lookup", "broken_lookup"} & set(tools)
    assert "tests" not in queues
    tools, queues = registered_in(os.environ["DJANGO_SETTINGS_MODULE"])
    assert {"side_effect", "slow_lookup", "broken_lookup"} <= set(tools) and "tests" in queues
