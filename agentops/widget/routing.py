from django.urls import path

from agentops.widget.consumers import WidgetConsumer

websocket_urlpatterns = [path("ws/widget/", WidgetConsumer.as_asgi())]
