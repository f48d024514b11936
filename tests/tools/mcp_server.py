"""A small MCP server for the tests, built with the `mcp` package.

python tests/tools/mcp_server.py stdio
python tests/tools/mcp_server.py http PORT [REQUIRED_BEARER_TOKEN]
"""

from __future__ import annotations

import hashlib
import os
import sys

import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("test-mcp")


@server.tool(description="Add two whole numbers.")
def add(a: int, b: int) -> int:
    return a + b


@server.tool(name="shout-text", description="Upper-case a text.")
def shout(text: str) -> str:
    return text.upper()


@server.tool(description="Always fails with the given message.")
def explode(message: str) -> str:
    raise ValueError(message)


@server.tool(description="A digest of the MCP_API_KEY environment variable (never the value).")
def key_digest() -> str:
    return hashlib.sha256(os.environ.get("MCP_API_KEY", "").encode()).hexdigest()


@server.tool(description="Sleep, then answer.")
async def nap(seconds: float) -> str:
    await anyio.sleep(seconds)
    return "rested"


_orders: dict[str, str] = {}


@server.tool(
    description="Place an order: once per idempotency key, a repeat gets the first answer."
)
def place_order(item: str, idempotency_key: str) -> str:
    return _orders.setdefault(idempotency_key, f"order {len(_orders) + 1}: {item}")


def main() -> None:
    mode = sys.argv[1]
    if mode == "stdio":
        server.run("stdio")
        return
    port = int(sys.argv[2])
    token = sys.argv[3] if len(sys.argv) > 3 else ""
    import uvicorn

    app = server.streamable_http_app(host="127.0.0.1")
    if token:
        inner = app

        async def app(scope, receive, send):  # type: ignore[no-untyped-def]
            if scope["type"] == "http":
                headers = dict(scope.get("headers") or [])
                if headers.get(b"authorization", b"") != f"Bearer {token}".encode():
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 401,
                            "headers": [(b"content-type", b"text/plain")],
                        }
                    )
                    await send({"type": "http.response.body", "body": b"unauthorized"})
                    return
            await inner(scope, receive, send)

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    anyio.run(uvicorn.Server(config).serve)


if __name__ == "__main__":
    main()
