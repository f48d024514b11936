from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agentops.models import Agent
from agentops.widget.demo import demo_server
from agentops.widget.models import WidgetKey
from agentops.widget.services import widget_key_create

DEMO_KEY_NAME = "Demo host page"


class Command(BaseCommand):
    help = (
        "Serve a host page on another port (another origin) that embeds the chat widget of "
        "the product at --product; creates the demo widget key the first time."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8010)
        parser.add_argument("--product", default="http://127.0.0.1:8000")
        parser.add_argument("--agent", default="demo")

    def handle(self, *args: Any, **options: Any) -> None:
        port, product = options["port"], options["product"].rstrip("/")
        agent = Agent.objects.filter(slug=options["agent"]).first()
        if agent is None:
            raise CommandError(f"No agent {options['agent']!r}: run `manage.py seed_demo` first.")
        origins = [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]
        key = WidgetKey.objects.filter(agent=agent, name=DEMO_KEY_NAME, enabled=True).first()
        if key is None:
            key, _ = widget_key_create(
                agent=agent, name=DEMO_KEY_NAME, allowed_origins=origins, actor=None
            )
        elif not set(origins) <= set(key.allowed_origins):
            key.allowed_origins = sorted(set(key.allowed_origins) | set(origins))
            key.save(update_fields=["allowed_origins"])
        server = demo_server(
            port=port, product=product, agent=agent.slug, key=key.public_key, secret=key.secret
        )
        self.stdout.write(
            f"Host page with the widget: http://127.0.0.1:{port}/ (anonymous), "
            f"http://127.0.0.1:{port}/?user=alice (signed-in user). Key {key.public_key}. "
            "Ctrl-C stops it."
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            server.shutdown()
