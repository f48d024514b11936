from django.apps import AppConfig


class TestingConfig(AppConfig):
    """Installed by agentops.testing.settings only: registers the crash-test tools."""

    name = "agentops.testing"
    label = "agentops_testing"

    def ready(self) -> None:
        from agentops.testing import tools  # noqa: F401
