"""A host page on another origin embedding the widget, as a customer's site would.

Plain `http.server` on 127.0.0.1: it is the host site, not part of the product. `/` embeds
the widget for an anonymous visitor; `/?user=ID` plays the host's backend too and signs
the user id with the key's secret (identity verification).
"""

from __future__ import annotations

import html
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from agentops.widget.services import user_token_for


def demo_page(
    *, product: str, agent: str, key: str, user_id: str = "", user_token: str = ""
) -> str:
    identity = (
        f' data-user-id="{html.escape(user_id)}" data-user-token="{html.escape(user_token)}"'
        if user_id
        else ""
    )
    who = f"signed-in user {html.escape(user_id)}" if user_id else "an anonymous visitor"
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<title>Example shop</title><link rel='icon' href='data:,'><style>body{font:16px system-ui;margin:40px}"
        "button,iframe{all:unset}</style></head><body>"
        f"<h1>Example shop</h1><p>A host page on another origin. You are {who}. "
        "The chat button is the AgentOps widget.</p>"
        "<p><a href='/'>Anonymous</a> · <a href='/?user=alice'>as alice</a> · "
        "<a href='/?user=bob'>as bob</a></p>"
        f'<script src="{html.escape(product)}/static/widget.js" data-agent="{html.escape(agent)}"'
        f' data-key="{html.escape(key)}"{identity} async></script>'
        "</body></html>"
    )


def demo_server(
    *, port: int, product: str, agent: str, key: str, secret: str
) -> ThreadingHTTPServer:
    """Serve the page in a daemon thread; the caller stops it with `.shutdown()`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path != "/":
                self.send_error(404)
                return
            user_id = (parse_qs(parts.query).get("user") or [""])[0][:150]
            token = user_token_for(secret=secret, user_id=user_id) if user_id else ""
            body = demo_page(
                product=product, agent=agent, key=key, user_id=user_id, user_token=token
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, name="widget-demo", daemon=True).start()
    return server
