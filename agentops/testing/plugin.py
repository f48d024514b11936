"""pytest plugin (loaded with `-p agentops.testing.plugin`, before pytest-django reads the
settings): points the suite at the embedded Postgres and Redis of a test data folder."""

import os

os.environ.setdefault("AGENTOPS_VAR_DIR", os.path.abspath("var/test"))
os.environ.setdefault("DEBUG", "1")
# The production settings plus the crash-test tools, for this process and every one it starts.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentops.testing.settings")
os.environ.setdefault("LOG_FORMAT", "console")
os.environ.setdefault("TOOL_EGRESS_ALLOWLIST", "")

from agentops.embedded import ensure_services, stop_services

_STARTED_HERE = ensure_services()


def pytest_unconfigure(config: object) -> None:
    """Stop the embedded servers this test run started (not ones that were already running)."""
    stop_services(_STARTED_HERE)
