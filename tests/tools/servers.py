"""Real HTTP servers on loopback for the tool tests (threads of the test process)."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Route = Callable[["Handler"], None]


class Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def path_only(self) -> str:
        return urlsplit(self.path).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.body = self.rfile.read(length) if length else b""
        self.server.owner.requests.append(
            {
                "method": self.command,
                "path": self.path_only,
                "query": self.query,
                "headers": dict(self.headers.items()),
                "body": self.body.decode("utf-8", "replace"),
                "peer_port": self.client_address[1],
            }
        )
        route = self.server.owner.routes.get(self.path_only)
        if route is None:
            self.send_json(404, {"error": "no such route"})
            return
        route(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(payload).encode(), "application/json", headers)

    def send_bytes(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: LoopbackServer


class LoopbackServer:
    """A ThreadingHTTPServer on a loopback address with routes a test sets up."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[dict[str, Any]] = []
        self.httpd = _Server((host, 0), Handler)
        self.httpd.owner = self
        self.host = host
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def route(self, path: str) -> Callable[[Route], Route]:
        def register(func: Route) -> Route:
            self.routes[path] = func
            return func

        return register

    def hits(self, path: str) -> int:
        return sum(1 for r in self.requests if r["path"] == path)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def add_standard_routes(server: LoopbackServer) -> None:
    """Routes most tests use: echo, failures of every class, slow, big, redirects."""

    @server.route("/echo")
    def echo(h: Handler) -> None:
        h.send_json(
            200,
            {
                "method": h.command,
                "path": h.path_only,
                "query": h.query,
                "headers": dict(h.headers.items()),
                "body": h.body.decode("utf-8", "replace"),
            },
        )

    @server.route("/items")
    def items(h: Handler) -> None:
        h.send_json(200, {"data": {"items": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}]}})

    @server.route("/text")
    def text(h: Handler) -> None:
        h.send_bytes(200, b"x" * 5000)

    @server.route("/ratelimit")
    def ratelimit(h: Handler) -> None:
        h.send_json(429, {"error": "slow down"}, {"Retry-After": "7"})

    @server.route("/ratelimit-date")
    def ratelimit_date(h: Handler) -> None:
        when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))
        h.send_json(429, {"error": "slow down"}, {"Retry-After": when})

    @server.route("/boom")
    def boom(h: Handler) -> None:
        h.send_json(500, {"error": "internal"})

    @server.route("/unavailable")
    def unavailable(h: Handler) -> None:
        h.send_json(503, {"error": "maintenance"}, {"Retry-After": "3"})

    @server.route("/missing")
    def missing(h: Handler) -> None:
        h.send_json(404, {"error": "no such order"})

    @server.route("/slow")
    def slow(h: Handler) -> None:
        time.sleep(float(h.query.get("s", ["3"])[0]))  # on purpose: a slow upstream
        h.send_json(200, {"late": True})

    @server.route("/drip")
    def drip(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Content-Length", "100")
        h.end_headers()
        try:
            for _ in range(100):
                h.wfile.write(b"x")
                h.wfile.flush()
                time.sleep(0.05)  # on purpose: a body that trickles in
        except OSError:
            pass

    @server.route("/big")
    def big(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b"y" * 65536
        try:
            for _ in range(64):
                h.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        server.big_finished = True  # type: ignore[attr-defined]

    @server.route("/big-declared")
    def big_declared(h: Handler) -> None:
        h.send_bytes(200, b"z" * 300_000)

    @server.route("/notjson")
    def notjson(h: Handler) -> None:
        h.send_bytes(200, b"<html>surprise</html>", "text/html")

    @server.route("/hangup")
    def hangup(h: Handler) -> None:
        h.close_connection = True
        h.connection.shutdown(socket.SHUT_RDWR)

    @server.route("/loop")
    def loop(h: Handler) -> None:
        h.send_bytes(302, b"", headers={"Location": "/loop"})

    @server.route("/redirect")
    def redirect(h: Handler) -> None:
        h.send_bytes(
            int(h.query.get("status", ["302"])[0]), b"", headers={"Location": h.query["to"][0]}
        )


class OAuthServer(LoopbackServer):
    """A token endpoint that counts the tokens it issues, and a resource that answers 401
    to any token but the newest (or to every token once `revoked`)."""

    def __init__(self, client_id: str, client_secret: str) -> None:
        super().__init__()
        self.client_id, self.client_secret = client_id, client_secret
        self.issued: list[str] = []
        self.expires_in = 3600
        self.reject_all = False

        @self.route("/token")
        def token(h: Handler) -> None:
            expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
            form = parse_qs(h.body.decode())
            if h.headers.get("Authorization") != f"Basic {expected}" or form.get("grant_type") != [
                "client_credentials"
            ]:
                h.send_json(401, {"error": "invalid_client"})
                return
            value = f"access-{len(self.issued) + 1}-{time.time_ns()}"
            self.issued.append(value)
            h.send_json(
                200,
                {
                    "access_token": value,
                    "token_type": "Bearer",
                    "expires_in": self.expires_in,
                    "scope": form.get("scope", [""])[0],
                },
            )

        @self.route("/resource")
        def resource(h: Handler) -> None:
            auth = h.headers.get("Authorization", "")
            if self.reject_all or not self.issued or auth != f"Bearer {self.issued[-1]}":
                h.send_json(401, {"error": "invalid_token"}, {"WWW-Authenticate": "Bearer"})
                return
            h.send_json(200, {"ok": True, "orders": [1, 2, 3]})
