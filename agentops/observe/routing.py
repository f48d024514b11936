from django.urls import path

from agentops.observe.consumers import OpsConsumer, RunConsumer

websocket_urlpatterns = [
    path("ws/runs/<uuid:run_id>/", RunConsumer.as_asgi()),
    path("ws/ops/", OpsConsumer.as_asgi()),
]
