"""Webhook delivery latency: from the moment an event is emitted (a session created) to its
signed POST reaching a loopback receiver, through the egress guard, with one concurrent
RQ worker on the embedded services. Prints JSON. Usage: `python bench/webhooks.py [--events N]`.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import threading
import time
import uuid

from _setup import django_setup, percentile


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between events")
    args = parser.parse_args()
    os.environ["TOOL_EGRESS_ALLOWLIST"] = "127.0.0.1/32"
    django_setup()
    from standardwebhooks.webhooks import Webhook

    from agentops.runtime.services import session_create
    from agentops.testing.processes import CONCURRENT_WORKER, child_env, start_worker
    from agentops.webhooks.models import WebhookEndpoint
    from agentops.webhooks.services import webhook_endpoint_create
    from tests.factories import AgentFactory, EndpointFactory

    arrived: dict[str, float] = {}
    bodies: list[tuple[dict[str, str], bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            arrived.setdefault(self.headers["webhook-id"], time.time())
            bodies.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    WebhookEndpoint.objects.all().delete()
    _, secret = webhook_endpoint_create(
        url=f"http://127.0.0.1:{server.server_address[1]}/hook", event_types=["session.created"]
    )
    worker = start_worker(child_env(), name="bench-webhooks", worker_class=CONCURRENT_WORKER)
    tag = uuid.uuid4().hex[:8]
    agent = AgentFactory(slug=f"bench-{tag}", endpoint=EndpointFactory(name=f"bench-{tag}"))
    try:
        warmup = session_create(agent=agent)  # measured from when the worker takes work
        deadline = time.monotonic() + 120
        while f"evt_session_{warmup.pk}" not in arrived and time.monotonic() < deadline:
            time.sleep(0.05)
        emitted: dict[str, float] = {}
        for _ in range(args.events):
            started = time.time()
            session = session_create(agent=agent)
            emitted[f"evt_session_{session.pk}"] = started
            time.sleep(args.interval)
        deadline = time.monotonic() + 60
        while len(arrived) < len(emitted) and time.monotonic() < deadline:
            time.sleep(0.05)
        latencies = [(arrived[k] - t) * 1000 for k, t in emitted.items() if k in arrived]
        verified = sum(1 for h, b in bodies if Webhook(secret).verify(b, h))
        print(
            json.dumps(
                {
                    "events": len(emitted),
                    "delivered": len(latencies),
                    "verified": verified,
                    "latency_ms": {
                        "p50": round(percentile(latencies, 50), 1),
                        "p95": round(percentile(latencies, 95), 1),
                        "max": round(max(latencies), 1),
                    },
                },
                indent=2,
            )
        )
    finally:
        worker.stop()
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
