from tests.agentops.openai_compat.conftest import worker  # noqa: F401
from tests.agentops.runtime.conftest import _handoff_packages_written  # noqa: F401
