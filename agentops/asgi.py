import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentops.settings")

from agentops.embedded import ensure_services

ensure_services()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from django.urls import get_resolver  # noqa: E402

from agentops.runtime.context import count_tokens  # noqa: E402

# Load before serving what the first requests would otherwise load, each of them waiting on
# the import locks: every view module and API schema (the URLconf is imported lazily), and
# the o200k encoding a posted message's tokens are counted with (~0.5 s).
get_resolver().url_patterns  # noqa: B018
count_tokens("warm up the o200k encoding")

from agentops.event_streams import EventStreams  # noqa: E402
from agentops.mcp_server.app import mount as mount_mcp  # noqa: E402
from agentops.openai_compat.app import mount  # noqa: E402
from agentops.request_guard import RequestGuard  # noqa: E402
from agentops.routing import websocket_urlpatterns  # noqa: E402
from agentops.websocket import (  # noqa: E402
    ApiKeyOrSiteOrigin,
    DatabaseUnavailableClose,
    SiteOriginValidator,
)

websocket_routes = URLRouter(websocket_urlpatterns)
application = ProtocolTypeRouter(
    {
        # A URL with a NUL refused; then /api/…/events (SSE), /mcp/ (agents as MCP tools),
        # /v1/ (OpenAI-compatible), Django
        "http": RequestGuard(EventStreams(mount_mcp(mount(django_asgi_app)))),
        "websocket": DatabaseUnavailableClose(
            ApiKeyOrSiteOrigin(
                websocket_routes, SiteOriginValidator(AuthMiddlewareStack(websocket_routes))
            )
        ),
    }
)
