import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentops.settings")

from agentops.embedded import ensure_services

ensure_services()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

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
