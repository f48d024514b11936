from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.kit import until, worker_fixture

WEBHOOK_ENV = {"TOOL_EGRESS_ALLOWLIST": "127.0.0.1/32", "WEBHOOK_QUEUE": "tests"}


class Receiver:
    """A loopback HTTP server that records each POST (headers, body) and answers with the
    next of `statuses` (the last one again once they run out)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [200])
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = (
                    receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                )
                answer = b"ok" if status < 300 else b"boom: the receiver is down"
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, count: int, timeout: float = 20.0) -> list[tuple[dict[str, str], bytes]]:
        until(
            lambda: len(self.requests) >= count,
            seconds=timeout,
            message=lambda: f"{len(self.requests)} requests, wanted {count}",
        )
        return self.requests

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:
    """Loopback is refused by the egress guard unless allowlisted, as in production."""
    settings.TOOL_EGRESS_ALLOWLIST = ["127.0.0.1/32"]
    settings.WEBHOOK_QUEUE = "tests"
    server = Receiver()
    yield server
    server.stop()


# A worker of the module's own on the `tests` queue, allowed to reach loopback (the suite's
# shared worker is not).
hook_worker = worker_fixture(name="webhooks", queues=("tests",), **WEBHOOK_ENV)
