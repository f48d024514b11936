"""The data migration scoping widget end users by key, run for real on Postgres."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from agentops.models import HandoffRating, Message, Session
from memory.models import Memory, MemoryEvent

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("widget", "0001_initial")


def migrate(*, widget_before: bool):  # type: ignore[no-untyped-def]
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    leaves = executor.loader.graph.leaf_nodes()
    targets = [n for n in leaves if n[0] != "widget"] + [BEFORE] if widget_before else leaves
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_it_moves_the_end_users_of_an_agent_with_one_key_to_that_key(alice):
    try:
        old = migrate(widget_before=True)
        endpoint = old.get_model("agentops", "ModelEndpoint").objects.create(
            name="e", base_url="http://127.0.0.1:9/v1", default_model="m"
        )
        OldAgent = old.get_model("agentops", "Agent")
        one = OldAgent.objects.create(slug="one", name="one", endpoint=endpoint)
        two = OldAgent.objects.create(slug="two", name="two", endpoint=endpoint)
        OldKey = old.get_model("widget", "WidgetKey")
        key = OldKey.objects.create(agent=one, name="A", public_key="pk_a", secret_ciphertext="")
        for name in ("B", "C"):
            OldKey.objects.create(
                agent=two, name=name, public_key=f"pk_{name}", secret_ciphertext=""
            )
        OldSession = old.get_model("agentops", "Session")
        widget = OldSession.objects.create(agent=one, external_user="user:alice")
        visitor = OldSession.objects.create(agent=one, external_user="visitor:v1")
        api = OldSession.objects.create(
            agent=one, external_user="user:alice", created_by_id=alice.pk
        )
        ambiguous = OldSession.objects.create(agent=two, external_user="user:alice")
        old.get_model("agentops", "Message").objects.create(
            session=widget, seq=1, role="user", content="hi", end_user="user:alice"
        )
        handoff = old.get_model("agentops", "Handoff").objects.create(session=widget, reason="r")
        old.get_model("agentops", "HandoffRating").objects.create(
            handoff=handoff, score=4, end_user="user:alice"
        )
        OldMemory = old.get_model("memory", "Memory")
        for agent, text in ((one, "alice at one"), (two, "alice at two")):
            memory = OldMemory.objects.create(
                agent_id=agent.pk, user_key="user:alice", text=text, content_hash=text
            )
            old.get_model("memory", "MemoryEvent").objects.create(
                memory=memory,
                memory_ref=memory.pk,
                agent_id=agent.pk,
                user_key="user:alice",
                action="create",
            )
    finally:
        migrate(widget_before=False)

    scoped = f"key:{key.pk}:"
    users = dict(Session.objects.values_list("pk", "external_user"))
    assert users == {
        widget.pk: scoped + "user:alice",
        visitor.pk: scoped + "visitor:v1",
        api.pk: "user:alice",  # an API client's own user name, not the widget's
        ambiguous.pk: "user:alice",  # two keys: reachable from neither
    }
    assert Message.objects.get().end_user == scoped + "user:alice"
    assert HandoffRating.objects.get().end_user == scoped + "user:alice"
    assert dict(Memory.objects.values_list("text", "user_key")) == {
        "alice at one": scoped + "user:alice",
        "alice at two": "user:alice",
    }
    assert dict(MemoryEvent.objects.values_list("agent_id", "user_key")) == {
        one.pk: scoped + "user:alice",
        two.pk: "user:alice",
    }
