"""pytest plugin (loaded with `-p agentops.testing.plugin`, before pytest-django reads the
settings): points the suite at the embedded Postgres and Redis of a test data folder.

Under pytest-xdist every worker process has a data folder, a Postgres and a Redis of its own
(`var/test-gw0`, `var/test-gw1`, ...): RQ queues, the session's Redis flush, pub/sub and the
processes a test starts never meet another worker's. The controller, which runs no test,
starts nothing.
"""

import os

import pytest

_WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ... in an xdist worker

os.environ.setdefault("AGENTOPS_VAR_DIR", os.path.abspath("var/test"))
os.environ.setdefault("DEBUG", "1")
# The production settings plus the crash-test tools, for this process and every one it starts.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentops.testing.settings")
os.environ.setdefault("LOG_FORMAT", "console")
os.environ.setdefault("TOOL_EGRESS_ALLOWLIST", "")

from agentops import embedded  # noqa: E402

# Whether the suite runs on embedded servers (DATABASE_URL and REDIS_URL unset by the caller).
# The controller sets this before its workers start; they inherit it with its addresses and
# replace those by their own folder's.
if "AGENTOPS_TEST_EMBEDDED" not in os.environ:
    _embedded = not os.environ.get("DATABASE_URL") and not os.environ.get("REDIS_URL")
    os.environ["AGENTOPS_TEST_EMBEDDED"] = "1" if _embedded else "0"
if _WORKER and os.environ["AGENTOPS_TEST_EMBEDDED"] == "1":
    os.environ["AGENTOPS_VAR_DIR"] = f"{os.environ['AGENTOPS_VAR_DIR']}-{_WORKER}"
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)

# Settings need the addresses now; the servers start once we know this process runs tests.
_STARTED_HERE: list[str] = []
if os.environ["AGENTOPS_TEST_EMBEDDED"] == "1":
    embedded.address_services()


def _start_embedded() -> None:
    if os.environ["AGENTOPS_TEST_EMBEDDED"] != "1":
        return
    if not (embedded.postgres_dir() / "postmaster.pid").exists():
        _STARTED_HERE.append("postgres")
    embedded.start_postgres()
    if not embedded.redis_answers(embedded.redis_socket()):
        _STARTED_HERE.append("redis")
    embedded.start_redis()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    if session.config.pluginmanager.has_plugin("dsession"):
        return  # the xdist controller: its workers start their own
    _start_embedded()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the embedded servers this test run started (not ones that were already running)."""
    embedded.stop_services(_STARTED_HERE)
