"""The takeover queue with many open handoffs: time to render a queue page (first, a deep
one, filtered by team, searched), the queries each page costs, and an operator's unread
count. Prints one JSON document.

Data (synthetic, seeded, removed at the end): `--handoffs` open handoffs over 5 teams, each
with a conversation of `--messages` messages, in the embedded Postgres of AGENTOPS_VAR_DIR
(default var/bench). Pages are rendered by the real view through Django's test client.

Usage: python bench/takeover_queue.py [--handoffs 2000] [--messages 10] [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

from _setup import django_setup, percentile


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--handoffs", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    django_setup()

    from django.contrib.auth.models import Group, User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from agentops.models import Agent, Handoff, Message, ModelEndpoint, Session, Team
    from agentops.operators.work.selectors import unread_counts

    rng = random.Random(7)
    words = [
        "refund",
        "order",
        "invoice",
        "password",
        "shipping",
        "broken",
        "login",
        "account",
        "card",
        "delay",
    ]
    endpoint = ModelEndpoint.objects.create(
        name=f"bench-queue-{rng.randrange(10**9)}", base_url="http://127.0.0.1:9/v1"
    )
    agent = Agent.objects.create(slug=f"bench-queue-{endpoint.pk}", name="Bench", endpoint=endpoint)
    teams = [Team.objects.create(slug=f"bench-{endpoint.pk}-{i}", name=f"T{i}") for i in range(5)]
    operator = User.objects.create(username=f"bench-op-{endpoint.pk}")
    operator.groups.add(Group.objects.get_or_create(name="operator")[0])
    teams[0].members.add(operator)
    try:
        sessions = Session.objects.bulk_create(
            Session(agent=agent, external_user=f"customer-{i}", status="handed_off")
            for i in range(args.handoffs)
        )
        Message.objects.bulk_create(
            Message(
                session=s,
                seq=n + 1,
                role="user" if n % 2 == 0 else "assistant",
                content=" ".join(rng.choice(words) for _ in range(12)) + f" #{i}-{n}",
            )
            for i, s in enumerate(sessions)
            for n in range(args.messages)
        )
        Handoff.objects.bulk_create(
            Handoff(
                session=s, reason=f"case {i}", team=teams[i % 5], priority=1 + i % 3, summary="s"
            )
            for i, s in enumerate(sessions)
        )
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(operator)
        cases: dict[str, dict[str, Any]] = {
            "first_page": {},
            "page_20": {"page": 20},
            "team": {"team": teams[1].slug},
            "search": {"q": "refund shipp"},
        }
        result: dict[str, Any] = {"handoffs": args.handoffs, "messages": args.messages}
        for name, query in cases.items():
            times = []
            for _ in range(args.repeat):
                with CaptureQueriesContext(connection) as captured:
                    start = time.perf_counter()
                    assert client.get("/operators/", query).status_code == 200
                    times.append((time.perf_counter() - start) * 1000)
            result[name] = {
                "p50_ms": round(percentile(times, 50), 1),
                "p95_ms": round(percentile(times, 95), 1),
                "queries": len(captured),
            }
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            counts = unread_counts(user=operator)
            times.append((time.perf_counter() - start) * 1000)
        result["unread_count"] = {
            "p50_ms": round(percentile(times, 50), 1),
            "p95_ms": round(percentile(times, 95), 1),
            "value": counts["total"],
        }
        print(json.dumps(result, indent=2))
    finally:
        Session.objects.filter(agent=agent).delete()
        agent.delete()
        endpoint.delete()
        for team in teams:
            team.delete()
        operator.delete()


if __name__ == "__main__":
    main()
