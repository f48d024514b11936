"""WebSocket routes of the whole deployment (each app keeps its own consumers)."""

websocket_urlpatterns: list = []
