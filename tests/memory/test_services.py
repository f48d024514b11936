import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from memory.embedders import get_embedder
from memory.errors import MemoryInputError
from memory.models import Memory, MemoryAction, MemoryEvent, MemoryRevision
from memory.services import (
    MemoryDraft,
    memory_delete,
    memory_embed,
    memory_recall,
    memory_remember,
    memory_remember_many,
    memory_update,
)


def test_it_merges_the_same_text_instead_of_storing_it_twice(agent):
    first = memory_remember(
        agent_id=agent.pk, user_key="u", text="The user likes green tea", importance=0.4
    )
    again = memory_remember(
        agent_id=agent.pk, user_key="u", text="  the user LIKES green   tea. ", importance=0.6
    )
    assert again.pk == first.pk
    assert Memory.objects.filter(agent_id=agent.pk).count() == 1
    assert again.importance == pytest.approx(0.7) and again.access_count == 1
    assert again.text == "The user likes green tea"
    merged = MemoryEvent.objects.get(memory=first, action=MemoryAction.MERGED)
    assert (
        merged.changes["reason"] == "same_text"
        and merged.changes["text"] == "the user LIKES green   tea."
    )


def test_it_merges_a_near_duplicate(agent):
    first = memory_remember(
        agent_id=agent.pk, user_key="u", text="The customer prefers to be contacted by email."
    )
    again = memory_remember(
        agent_id=agent.pk, user_key="u", text="The customer prefers being contacted by email."
    )
    assert again.pk == first.pk and Memory.objects.filter(agent_id=agent.pk).count() == 1
    event = MemoryEvent.objects.get(memory=first, action=MemoryAction.MERGED)
    assert event.changes["reason"] == "similar" and event.changes["similarity"] >= 0.95
    # Nothing said is lost: the merged wording is in the audit trail.
    assert event.changes["text"] == "The customer prefers being contacted by email."


def test_it_keeps_near_duplicates_that_state_different_numbers(agent):
    # 0.96 similar with wordllama, yet a different address.
    first = memory_remember(agent_id=agent.pk, user_key="u", text="Ship to 12 Baker Street")
    second = memory_remember(agent_id=agent.pk, user_key="u", text="Ship to 14 Baker Street")
    assert first.pk != second.pk


def test_it_merges_only_within_one_scope(agent, other_agent):
    a = memory_remember(
        agent_id=agent.pk, user_key="ana", text="Prefers the morning delivery slot."
    )
    b = memory_remember(
        agent_id=agent.pk, user_key="ben", text="Prefers the morning delivery slot."
    )
    c = memory_remember(agent_id=agent.pk, user_key="", text="Prefers the morning delivery slot.")
    d = memory_remember(
        agent_id=other_agent.pk, user_key="ana", text="Prefers the morning delivery slot."
    )
    assert len({a.pk, b.pk, c.pk, d.pk}) == 4


def test_it_keeps_the_longest_lifetime_when_merging(agent):
    first = memory_remember(
        agent_id=agent.pk, user_key="u", text="Sale ends Friday.", ttl_seconds=60
    )
    longer = memory_remember(
        agent_id=agent.pk, user_key="u", text="Sale ends Friday.", ttl_seconds=3600
    )
    assert longer.expires_at > first.expires_at
    forever = memory_remember(agent_id=agent.pk, user_key="u", text="Sale ends Friday.")
    assert forever.expires_at is None


def test_it_records_provenance(agent):
    run = uuid.uuid4()
    memory = memory_remember(
        agent_id=agent.pk,
        user_key="u",
        text="Owns a red bicycle.",
        kind="fact",
        source_run_id=run,
        source_step=3,
    )
    assert (memory.source_run_id, memory.source_step) == (run, 3)
    assert memory.embedder == get_embedder().name and len(memory.embedding) == 256
    created = MemoryEvent.objects.get(memory=memory, action=MemoryAction.CREATED)
    assert (
        created.run_id == run
        and created.actor_label == f"run {run}"
        and created.changes["step"] == 3
    )


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("text", {"text": "   "}),
        ("text", {"text": "x" * 2001}),
        ("text", {"text": None}),
        ("kind", {"kind": "opinion"}),
        ("importance", {"importance": 1.5}),
        ("importance", {"importance": float("nan")}),
        ("importance", {"importance": "high"}),
        ("ttl_seconds", {"ttl_seconds": 0}),
        ("ttl_seconds", {"ttl_seconds": "1 day"}),
        ("user_key", {"user_key": "u" * 201}),
    ],
)
def test_it_rejects_bad_input_naming_the_field(agent, field, kwargs):
    args = {"agent_id": agent.pk, "user_key": "u", "text": "A fine memory.", **kwargs}
    with pytest.raises(MemoryInputError) as caught:
        memory_remember(**args)
    assert caught.value.field == field and field.split("_")[0] in str(caught.value)
    assert not Memory.objects.exists()


def test_it_keeps_the_previous_text_when_edited(agent, bob):
    memory = memory_remember(agent_id=agent.pk, user_key="u", text="Lives in Lyon.")
    updated = memory_update(memory=memory, text="Lives in Grenoble.", importance=0.8, actor=bob)
    assert (
        updated.text == "Lives in Grenoble."
        and updated.importance == 0.8
        and updated.edited_by == bob
    )
    assert list(MemoryRevision.objects.filter(memory=memory).values_list("text", "edited_by")) == [
        ("Lives in Lyon.", bob.pk)
    ]
    event = MemoryEvent.objects.get(memory=memory, action=MemoryAction.UPDATED)
    assert event.actor == bob and event.changes == {
        "text": ["Lives in Lyon.", "Lives in Grenoble."],
        "importance": [0.5, 0.8],
    }
    # Recall skips it until the new text is embedded (by a job; here directly).
    assert updated.embedding is None and updated.embedder == ""
    assert memory_recall(agent_id=agent.pk, user_key="u", query="Grenoble", k=5) == []
    assert memory_embed(memory_ids=[memory.pk]) == 1
    assert [
        r.id for r in memory_recall(agent_id=agent.pk, user_key="u", query="Grenoble", k=5)
    ] == [memory.pk]


def test_it_refuses_an_edit_that_would_duplicate_another_memory(agent, bob):
    memory_remember(agent_id=agent.pk, user_key="u", text="Lives in Lyon.")
    other = memory_remember(agent_id=agent.pk, user_key="u", text="Works in Lyon.")
    with pytest.raises(MemoryInputError) as caught:
        memory_update(memory=other, text="lives in lyon", actor=bob)
    assert caught.value.field == "text"
    other.refresh_from_db()
    assert other.text == "Works in Lyon." and not MemoryRevision.objects.exists()


def test_it_audits_pins_and_deletions(agent, bob):
    memory = memory_remember(agent_id=agent.pk, user_key="u", text="Lives in Lyon.")
    memory_update(memory=memory, text="Lives in Paris.", actor=bob)
    memory_update(memory=memory, pinned=True, actor=bob)
    memory_update(memory=memory, pinned=True, actor=bob)  # no change, no event
    memory_delete(memory=memory, actor=bob)
    assert not Memory.objects.filter(pk=memory.pk).exists()
    events = list(MemoryEvent.objects.filter(memory_ref=memory.pk).order_by("id"))
    assert [e.action for e in events] == ["created", "updated", "pinned", "deleted"]
    assert all(e.memory_id is None for e in events)
    deleted = events[-1]
    assert deleted.actor == bob and deleted.changes["text"] == "Lives in Paris."
    assert deleted.changes["revisions"] == ["Lives in Lyon."] and deleted.changes["pinned"] is True


BATCH = [
    "the customer prefers to be contacted by email",  # the same text as a stored memory
    "The customer prefers being contacted by email.",  # a near duplicate of it
    "Ship to 14 Baker Street",  # near a stored one, but other numbers
    "Owns a red bicycle.",
    "owns a red bicycle",  # repeats an earlier draft
    "Prefers the morning delivery slot.",
]


def _shape(memories: list[Memory]) -> list[tuple[int, float, int]]:
    """Which memory each write ended in (numbered by first appearance), its importance and
    access count afterwards."""
    order: dict[int, int] = {}
    rows = {m.pk: m for m in Memory.objects.filter(pk__in=[m.pk for m in memories])}
    return [
        (
            order.setdefault(m.pk, len(order)),
            round(rows[m.pk].importance, 3),
            rows[m.pk].access_count,
        )
        for m in memories
    ]


@pytest.mark.parametrize("exact_max", [1000, 0])  # the scope searched exactly, then by HNSW
def test_remember_many_stores_and_merges_like_one_at_a_time(agent, settings, exact_max):
    settings.MEMORY_EXACT_SEARCH_MAX = exact_max
    results = {}
    for user_key in ("one-by-one", "batch"):
        stored = [
            memory_remember(agent_id=agent.pk, user_key=user_key, text=text)
            for text in (
                "The customer prefers to be contacted by email.",
                "Ship to 12 Baker Street",
            )
        ]
        if user_key == "batch":
            written = memory_remember_many(
                agent_id=agent.pk, user_key=user_key, drafts=[MemoryDraft(text) for text in BATCH]
            )
        else:
            written = [
                memory_remember(agent_id=agent.pk, user_key=user_key, text=text) for text in BATCH
            ]
        results[user_key] = _shape(stored + written)
        events = MemoryEvent.objects.filter(agent_id=agent.pk, user_key=user_key)
        results[user_key + " events"] = sorted(
            (e.action, e.changes.get("reason", ""), e.changes.get("text", "")) for e in events
        )
    assert results["batch"] == results["one-by-one"]
    assert results["batch events"] == results["one-by-one events"]
    email, baker, fourteen, bicycle, again, slot = results["batch"][:2] + results["batch"][4:]
    assert results["batch"][2][0] == results["batch"][3][0] == email[0]  # both merged
    assert len({email[0], baker[0], fourteen[0], bicycle[0], slot[0]}) == 5
    assert again[0] == bicycle[0]


def test_remember_many_writes_with_a_fixed_number_of_queries_and_records_provenance(agent):
    run = uuid.uuid4()

    def queries_for(n: int, user_key: str) -> int:
        memory_remember(agent_id=agent.pk, user_key=user_key, text="Order 3 was late")
        drafts = [
            MemoryDraft(f"Order {i} of {user_key} shipped on day {i % 28}", kind="episode")
            for i in range(n)
        ]
        with CaptureQueriesContext(connection) as queries:
            written = memory_remember_many(
                agent_id=agent.pk,
                user_key=user_key,
                drafts=drafts,
                source_run_id=run,
                source_step=4,
            )
        assert len({m.pk for m in written}) == n  # "Order 3 of ..." is not "Order 3 was late"
        return len(queries.captured_queries)

    assert queries_for(3, "few") == queries_for(40, "many")
    memory = Memory.objects.get(agent_id=agent.pk, user_key="many", text__startswith="Order 7 ")
    assert (memory.kind, memory.source_run_id, memory.source_step) == ("episode", run, 4)
    assert memory.embedder == get_embedder().name and len(memory.embedding) == 256
    created = MemoryEvent.objects.get(memory=memory, action=MemoryAction.CREATED)
    assert created.run_id == run and created.actor_label == f"run {run}"
    assert created.changes["step"] == 4


def test_remember_many_rejects_a_bad_draft_before_writing_any(agent):
    drafts = [MemoryDraft("A fine memory."), MemoryDraft("Another one.", importance=1.5)]
    with pytest.raises(MemoryInputError) as caught:
        memory_remember_many(agent_id=agent.pk, user_key="u", drafts=drafts)
    assert caught.value.field == "importance" and "memory 2" in str(caught.value)
    assert not Memory.objects.exists()
    with pytest.raises(MemoryInputError) as caught:
        memory_remember_many(agent_id=agent.pk, user_key="u" * 201, drafts=drafts[:1])
    assert caught.value.field == "user_key"
    assert memory_remember_many(agent_id=agent.pk, user_key="u", drafts=[]) == []
