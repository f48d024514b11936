from tests.agentops.runtime.conftest import _handoff_packages_written  # noqa: F401
