from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from agentops.testing.processes import PROJECT_DIR, free_port
from tests.tools.servers import LoopbackServer, add_standard_routes
from tools.credentials import credential_save
from tools.models import Credential, ToolDefinition, ToolKind
from tools.services import tool_save

MCP_SERVER_SCRIPT = str(PROJECT_DIR / "tests" / "tools" / "mcp_server.py")
MCP_TOKEN = "mcp-bearer-7f3a9c2e5d1b"


@pytest.fixture(scope="session")
def api_server() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    add_standard_routes(server)
    yield server
    server.stop()


@pytest.fixture
def allow_loopback(settings):  # type: ignore[no-untyped-def]
    """Put 127.0.0.1 (only) on the egress allowlist, as the issue's tests do."""
    settings.TOOL_EGRESS_ALLOWLIST = ["127.0.0.1/32"]
    return settings


def make_http_tool(
    name: str,
    url: str,
    *,
    parameters: dict | None = None,
    credential: Credential | None = None,
    timeout: float = 2.0,
    **config: object,
) -> ToolDefinition:
    tool = ToolDefinition(
        name=name,
        description=f"Test tool {name}",
        kind=ToolKind.HTTP,
        parameters=parameters or {"type": "object", "properties": {}},
        http_config={"method": "GET", "url": url, **config},
        timeout_seconds=timeout,
        credential=credential,
    )
    return tool_save(tool=tool)


def make_credential(name: str, kind: str, secret: str, **fields: object) -> Credential:
    return credential_save(credential=Credential(name=name, kind=kind, **fields), secret=secret)


class McpProcess:
    def __init__(self, *args: str) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, MCP_SERVER_SCRIPT, *args],
            cwd=PROJECT_DIR,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)


def _wait_port(port: int, proc: McpProcess, seconds: float = 20) -> None:
    import socket

    from tests.kit import until

    def listening() -> bool:
        if proc.popen.poll() is not None:
            raise RuntimeError("the MCP test server exited")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    until(listening, seconds=seconds, message="the MCP test server did not start")


@pytest.fixture(scope="session")
def mcp_http_url() -> Iterator[str]:
    """A real MCP server (the `mcp` package) over streamable HTTP on loopback, requiring a
    bearer token."""
    port = free_port()
    proc = McpProcess("http", str(port), MCP_TOKEN)
    try:
        _wait_port(port, proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.stop()
