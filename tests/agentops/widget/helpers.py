from __future__ import annotations

import json
from typing import Any

from django.test import Client

from agentops.conversation import widget_end_user
from agentops.widget.models import WidgetKey
from agentops.widget.services import EndUser, widget_key_create
from tests.factories import AgentFactory

HOST_ORIGIN = "https://shop.example.com"
OWN_ORIGIN = "http://testserver"


def make_key(agent: Any = None, **kwargs: Any) -> tuple[WidgetKey, str]:
    kwargs.setdefault("allowed_origins", [HOST_ORIGIN])
    return widget_key_create(agent=agent or AgentFactory(), name="Shop", actor=None, **kwargs)


def enduser(key: WidgetKey, identity: str = "visitor:me") -> EndUser:
    """The end user a frame token for `identity` names under this key."""
    return EndUser(key.pk, widget_end_user(key_id=key.pk, identity=identity))


def frame_token(client: Client, key: WidgetKey, **headers: Any) -> str:
    response = client.get(
        f"/widget/frame/?key={key.public_key}", HTTP_REFERER=f"{HOST_ORIGIN}/cart", **headers
    )
    assert response.status_code == 200, response.content
    html = response.content.decode()
    start = html.index('data-token="') + len('data-token="')
    return html[start : html.index('"', start)]


def api(client: Client, path: str, token: str, body: dict[str, Any] | None = None, **headers: Any):  # type: ignore[no-untyped-def]
    headers.setdefault("HTTP_ORIGIN", OWN_ORIGIN)
    return client.post(
        f"/widget/api/{path}",
        json.dumps(body or {}),
        content_type="application/json",
        HTTP_X_WIDGET_TOKEN=token,
        **headers,
    )
