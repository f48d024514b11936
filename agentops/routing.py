"""WebSocket routes of the whole deployment (each app keeps its own consumers)."""

from django.urls import path, re_path

from agentops.consumers import SessionConsumer
from agentops.operators.consumers import InboxConsumer
from agentops.websocket import NotFoundConsumer

websocket_urlpatterns: list = [
    path("ws/sessions/<uuid:session_id>/", SessionConsumer.as_asgi()),
    path("ws/inbox/", InboxConsumer.as_asgi()),
]

from agentops.observe.routing import websocket_urlpatterns as _observe_routes  # noqa: E402

websocket_urlpatterns += _observe_routes
from agentops.widget.routing import websocket_urlpatterns as _widget_routes  # noqa: E402

websocket_urlpatterns += _widget_routes
websocket_urlpatterns.append(re_path(r"", NotFoundConsumer.as_asgi()))
