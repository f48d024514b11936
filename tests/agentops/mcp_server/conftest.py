from tests.agentops.openai_compat.conftest import worker  # noqa: F401
