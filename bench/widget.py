"""The chat widget's figures: widget.js size (raw and gzipped), and the time from an end user
pressing Enter in the widget to the first streamed token shown in it. Prints JSON.

Real parts: the ASGI web server, one RQ worker, the development model server answering at
once (`latency` 0) and streaming a word every `--word-delay` seconds (the first one too), headless Chromium opening a host page
on another origin that embeds the widget. The time is taken in the frame (performance.now()
at the form's submit, then when the streamed bubble first gets text): it covers the POST, the
run's queueing and start, the model call, the live sender, Redis, the WebSocket and the DOM.

Usage: `python bench/widget.py [--messages 20]` (own data folder var/bench).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
import uuid
from pathlib import Path

from _setup import devmodel_script, devmodel_start, django_setup, percentile

HERE = Path(__file__).resolve().parent
WIDGET_JS = HERE.parent / "agentops" / "widget" / "static" / "widget.js"

MEASURE = """() => { window.aowMeasured = new Promise((resolve) => {
  const form = document.getElementById("aow-form");
  let sent = 0;
  form.addEventListener("submit", () => { sent = performance.now(); }, { capture: true, once: true });
  const seen = new MutationObserver(() => {
    const bubble = document.querySelector("[data-streaming] .aow-body");
    if (sent && bubble && bubble.textContent) {
      seen.disconnect();
      resolve(performance.now() - sent);
    }
  });
  seen.observe(document.getElementById("aow-log"), { childList: true, subtree: true, characterData: true });
}); }"""


def script_size() -> dict[str, int]:
    raw = WIDGET_JS.read_bytes()
    return {"widget_js_bytes": len(raw), "widget_js_gzip_bytes": len(gzip.compress(raw, 9))}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--word-delay", type=float, default=0.05)
    args = parser.parse_args()

    django_setup()
    from playwright.sync_api import sync_playwright

    from agentops.models import Run
    from agentops.testing.processes import (
        child_env,
        free_port,
        start_web,
        start_worker,
    )
    from agentops.widget.demo import demo_server
    from agentops.widget.services import widget_key_create
    from tests.browser.conftest import CHROMIUM_ARGS
    from tests.factories import AgentFactory, EndpointFactory

    devmodel, devmodel_base = devmodel_start()
    model = f"bench-{uuid.uuid4().hex[:8]}"
    script = {
        "model": model,
        "latency": 0,
        "faults": [{"stream_delay": args.word_delay}] * (args.messages + 1),
    }
    devmodel_script(devmodel_base, script)
    endpoint = EndpointFactory(name=model, base_url=f"{devmodel_base}/v1", default_model=model)
    agent = AgentFactory(slug=model, endpoint=endpoint, memory_enabled=False)
    host_port = free_port()
    key, secret = widget_key_create(
        agent=agent,
        name="bench",
        allowed_origins=[f"http://127.0.0.1:{host_port}"],
        actor=None,
        user_messages_per_minute=1000,
    )
    env = child_env(LOG_LEVEL="ERROR", LOG_REQUESTS="0")
    web_port = free_port()
    web = start_web(env, web_port)
    worker = start_worker(env, name="bench-widget")
    product = f"http://127.0.0.1:{web_port}"
    host = demo_server(
        port=host_port, product=product, agent=agent.slug, key=key.public_key, secret=secret
    )
    firsts: list[float] = []
    # Playwright's sync API runs an event loop in this thread; the ORM reads between browser
    # steps are plain synchronous code (set after the servers started, as the tests do).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{host_port}/")
            page.get_by_role("button", name="Open chat").click()
            frame = page.frame_locator("iframe[title=Chat]")
            frame.locator("#aow[data-connected]").wait_for()
            log = frame.locator("#aow-log")
            for i in range(args.messages + 1):  # the first one warms up (session, pools)
                log.evaluate(MEASURE.replace("() =>", "(_) =>", 1))
                frame.locator("#aow-input").fill(f"message number {i}")
                frame.locator("#aow-input").press("Enter")
                ms = log.evaluate("() => window.aowMeasured")
                frame.locator(".aow-assistant", has_text=f"message number {i}").wait_for()
                while Run.objects.filter(agent=agent, finished_at__isnull=True).exists():
                    time.sleep(0.05)
                if i:
                    firsts.append(ms)
            browser.close()
    finally:
        host.shutdown()
        for proc in (worker, web, devmodel):
            proc.stop(timeout=30)
    result = {
        **script_size(),
        "messages": len(firsts),
        "send_to_first_token_ms": {
            "p50": round(percentile(firsts, 50), 1),
            "p95": round(percentile(firsts, 95), 1),
            "max": round(max(firsts), 1),
        },
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
