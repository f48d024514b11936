import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from memory.embedders import get_embedder
from memory.errors import MemoryInputError
from memory.models import Memory, MemoryAction, MemoryEvent, MemoryRecall
from memory.selectors import memory_pinned, memory_rank, memory_search, rerank_score
from memory.services import (
    RecallUse,
    memory_delete,
    memory_expire,
    memory_recall,
    memory_recall_flush,
    memory_recall_uses_write,
    memory_remember,
    memory_update,
)
from tests.kit import until
from tests.memory.labelled import AGENT_WIDE, MEMORIES, QUERIES
from tracing.emit import Tracer
from tracing.models import Span


def test_it_recalls_the_labelled_memories(agent):
    ids = {}
    for i, text in enumerate(MEMORIES):
        ids[i] = memory_remember(agent_id=agent.pk, user_key="ana", text=text).pk
    for i, text in enumerate(AGENT_WIDE):
        ids[f"w{i}"] = memory_remember(agent_id=agent.pk, user_key="", text=text).pk
    found = relevant = 0
    for question, answers in QUERIES:
        got = {r.id for r in memory_recall(agent_id=agent.pk, user_key="ana", query=question, k=5)}
        found += len(got & {ids[a] for a in answers})
        relevant += len(answers)
    recall_at_5 = found / relevant
    print(
        f"\nrecall@5 on the labelled set ({len(QUERIES)} questions, {get_embedder().name}): {recall_at_5:.3f}"
    )
    assert recall_at_5 >= 0.9


def test_it_never_recalls_another_users_memory(agent, other_agent, settings):
    secret = memory_remember(
        agent_id=agent.pk, user_key="alice-customer", text="Alice's door code is 4521."
    )
    shared = memory_remember(
        agent_id=agent.pk, user_key="", text="Door codes are never given over the phone."
    )
    foreign = memory_remember(
        agent_id=other_agent.pk, user_key="bob-customer", text="Bob's door code is 9911."
    )
    own = memory_remember(
        agent_id=agent.pk, user_key="bob-customer", text="Bob asked about parking."
    )
    for exact_max in (1000, 0):  # the exact path, then the HNSW path
        settings.MEMORY_EXACT_SEARCH_MAX = exact_max
        got = memory_recall(
            agent_id=agent.pk, user_key="bob-customer", query="Alice's door code is 4521.", k=50
        )
        ids = {r.id for r in got}
        assert secret.pk not in ids and foreign.pk not in ids
        assert ids == {shared.pk, own.pk}
        # An agent-wide conversation sees agent-wide memories only.
        assert {
            r.id for r in memory_recall(agent_id=agent.pk, user_key="", query="door code", k=50)
        } == {shared.pk}
    assert {m.pk for m in memory_pinned(agent_id=agent.pk, user_key="bob-customer")} == set()


def test_it_finds_a_small_scope_hidden_behind_a_crowd_of_nearer_memories(agent, settings):
    _hidden_scope_found(agent, settings)


def test_outside_a_transaction_the_hnsw_settings_hold_for_the_one_round_trip_search(
    transactional_db, agent, settings
):
    """Outside a transaction the HNSW search sends its set_config()s and the query as one
    query string (one implicit transaction): they must still hold for it, and end with it."""
    _hidden_scope_found(agent, settings)
    with connection.cursor() as cursor:
        cursor.execute("SHOW hnsw.iterative_scan")
        assert cursor.fetchone()[0] == "off"


def _hidden_scope_found(agent, settings):  # type: ignore[no-untyped-def]
    # The filtered-HNSW pitfall: 300 memories of one user lie nearer the query than any of
    # the other user's three; the graph walk meets only the crowd.
    for i in range(300):
        Memory.objects.create(
            agent_id=agent.pk,
            user_key="crowd",
            text=f"Order {i} was delivered to the warehouse.",
            content_hash=f"crowd-{i}",
            embedding=get_embedder().embed([f"Order {i} was delivered to the warehouse."])[0],
            embedder=get_embedder().name,
        )
    mine = {
        memory_remember(agent_id=agent.pk, user_key="few", text=t).pk
        for t in ("Likes tulips in spring.", "Has a sailing boat.", "Collects old maps.")
    }
    query = get_embedder().embed(["Was the order delivered to the warehouse?"])[0]
    plain = memory_search(
        agent_id=agent.pk,
        embedding=query,
        limit=10,
        user_keys=["", "few"],
        strategy="hnsw",
        iterative_scan="off",
        ef_search=10,
    )
    assert len(plain.memories) < 3  # what a filtered HNSW scan without iterative scans returns

    settings.MEMORY_EXACT_SEARCH_MAX = 0  # recall takes the HNSW path here
    got = memory_recall(
        agent_id=agent.pk, user_key="few", query="Was the order delivered to the warehouse?", k=5
    )
    assert {r.id for r in got} == mine
    settings.MEMORY_EXACT_SEARCH_MAX = 1000
    exact = memory_search(agent_id=agent.pk, embedding=query, limit=10, user_keys=["", "few"])
    assert exact.strategy == "exact" and {m.pk for m in exact.memories} == mine


def test_it_leaves_expired_memories_out_and_deletes_them(agent):
    old = memory_remember(
        agent_id=agent.pk, user_key="u", text="The promo code SPRING is valid.", ttl_seconds=60
    )
    keep = memory_remember(
        agent_id=agent.pk, user_key="u", text="The promo code SUMMER is valid.", ttl_seconds=3600
    )
    forever = memory_remember(
        agent_id=agent.pk, user_key="u", text="The customer prefers promo codes by SMS."
    )
    assert old.expires_at is not None and forever.expires_at is None
    Memory.objects.filter(pk=old.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1), pinned=True
    )
    got = {r.id for r in memory_recall(agent_id=agent.pk, user_key="u", query="promo code", k=10)}
    assert got == {keep.pk, forever.pk}
    assert memory_pinned(agent_id=agent.pk, user_key="u") == []

    assert memory_expire() == 1
    assert not Memory.objects.filter(pk=old.pk).exists()
    event = MemoryEvent.objects.get(memory_ref=old.pk, action=MemoryAction.EXPIRED)
    assert (
        event.changes["text"] == "The promo code SPRING is valid." and event.actor_label == "system"
    )
    assert memory_expire(now=timezone.now() + timedelta(hours=2)) == 1  # SUMMER's hour is up then
    assert list(Memory.objects.filter(agent_id=agent.pk).values_list("pk", flat=True)) == [
        forever.pk
    ]


def test_it_expires_in_batches(agent):
    past = timezone.now() - timedelta(minutes=1)
    for i in range(5):
        memory_remember(
            agent_id=agent.pk, user_key="", text=f"Temporary note number {i}.", ttl_seconds=10
        )
    Memory.objects.filter(agent_id=agent.pk).update(expires_at=past)
    memory_remember(agent_id=agent.pk, user_key="", text="A lasting note.")
    assert memory_expire(batch_size=2) == 5
    assert Memory.objects.filter(agent_id=agent.pk).count() == 1
    assert MemoryEvent.objects.filter(agent_id=agent.pk, action=MemoryAction.EXPIRED).count() == 5


def test_it_records_who_recalled_what_and_leaves_pinned_ones_to_the_pinned_list(agent):
    run = uuid.uuid4()
    tea = memory_remember(agent_id=agent.pk, user_key="u", text="The customer drinks green tea.")
    name = memory_remember(
        agent_id=agent.pk, user_key="u", text="The customer is called Ana.", importance=0.9
    )
    memory_update(memory=name, pinned=True, actor=None)
    got = memory_recall(
        agent_id=agent.pk, user_key="u", query="what does the customer drink", k=5, run_id=run
    )
    assert [r.id for r in got] == [tea.pk]
    assert got[0].kind == "fact" and got[0].text == tea.text and 0 < got[0].similarity <= 1
    tea.refresh_from_db()
    assert tea.access_count == 1 and tea.last_accessed_at is not None
    assert list(MemoryRecall.objects.values_list("memory_id", "run_id")) == [(tea.pk, run)]
    assert [m.pk for m in memory_pinned(agent_id=agent.pk, user_key="u")] == [name.pk]
    assert memory_pinned(agent_id=agent.pk, user_key="someone-else") == []


def test_it_ranks_importance_and_recency_after_similarity():
    now = timezone.now()
    base = {"similarity": 0.6, "last_used": now, "now": now}
    assert rerank_score(importance=0.9, **base) > rerank_score(importance=0.1, **base)
    month_old = {**base, "last_used": now - timedelta(days=30)}
    assert rerank_score(importance=0.5, **base) > rerank_score(importance=0.5, **month_old)
    # Similarity dominates: a far more similar memory wins over an important, fresh one.
    assert rerank_score(
        similarity=0.8, importance=0.0, last_used=now - timedelta(days=365), now=now
    ) > (rerank_score(similarity=0.5, importance=1.0, last_used=now, now=now))


def test_it_auto_pins_a_memory_recalled_often_unless_a_person_unpinned_it(agent, settings, bob):
    settings.MEMORY_AUTO_PIN_RECALLS = 3
    tea = memory_remember(agent_id=agent.pk, user_key="u", text="The customer drinks green tea.")
    for _ in range(3):
        memory_recall(agent_id=agent.pk, user_key="u", query="tea", k=1)
    tea.refresh_from_db()
    assert tea.pinned
    event = MemoryEvent.objects.get(memory=tea, action=MemoryAction.AUTO_PINNED)
    assert event.actor_label == "system" and event.changes["threshold"] == 3

    memory_update(memory=tea, pinned=False, actor=bob)
    for _ in range(3):
        memory_recall(agent_id=agent.pk, user_key="u", query="tea", k=1)
    tea.refresh_from_db()
    assert not tea.pinned and tea.access_count == 6


def test_it_traces_writes_and_recalls(agent):
    tracer = Tracer(uuid.uuid4(), agent=agent.slug)
    memory_remember(
        agent_id=agent.pk, user_key="u", text="The customer drinks green tea.", tracer=tracer
    )
    memory_remember(
        agent_id=agent.pk, user_key="u", text="the customer drinks green tea", tracer=tracer
    )
    memory_recall(agent_id=agent.pk, user_key="u", query="tea", k=3, tracer=tracer)
    with pytest.raises(MemoryInputError):
        memory_remember(agent_id=agent.pk, user_key="u", text="  ", tracer=tracer)
    tracer.flush_now()
    spans = list(Span.objects.filter(trace_id=tracer.trace_id).order_by("seq"))
    assert [s.name for s in spans] == [
        "memory.write",
        "memory.write",
        "memory.recall",
        "memory.write",
    ]
    assert (
        spans[0].attributes["memory.merged"] == ""
        and spans[1].attributes["memory.merged"] == "same_text"
    )
    assert (
        spans[2].attributes["memory.returned"] == 1
        and spans[2].attributes["memory.strategy"] == "exact"
    )
    assert spans[3].status == "error" and spans[3].error_class == "invalid_request"


@pytest.mark.parametrize("k", [0, -1, "5", 2.5])
def test_it_rejects_a_bad_k(agent, k):
    with pytest.raises(MemoryInputError) as caught:
        memory_recall(agent_id=agent.pk, user_key="u", query="tea", k=k)
    assert caught.value.field == "k"


def test_it_returns_nothing_for_an_empty_query_or_scope(agent):
    assert memory_recall(agent_id=agent.pk, user_key="u", query="   ", k=5) == []
    assert memory_recall(agent_id=agent.pk, user_key="u", query="tea", k=5) == []


def test_it_ranks_without_writing_and_records_only_through_the_service(agent):
    tea = memory_remember(agent_id=agent.pk, user_key="u", text="The customer drinks green tea.")
    with CaptureQueriesContext(connection) as queries:
        ranking = memory_rank(agent_id=agent.pk, user_key="u", query="tea", k=3)
    assert [r.id for r in ranking.recalled] == [tea.pk] and ranking.strategy == "exact"
    assert queries.captured_queries and not any(
        word in q["sql"].upper()
        for q in queries.captured_queries
        for word in ("INSERT", "UPDATE", "DELETE")
    )
    tea.refresh_from_db()
    assert tea.access_count == 0 and not MemoryRecall.objects.exists()

    run = uuid.uuid4()
    memory_recall(agent_id=agent.pk, user_key="u", query="tea", k=3, run_id=run)
    tea.refresh_from_db()
    assert tea.access_count == 1
    assert list(MemoryRecall.objects.values_list("memory_id", "run_id")) == [(tea.pk, run)]


def _writes(queries: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"]
        for q in queries.captured_queries
        if any(word in q["sql"].upper() for word in ("INSERT", "UPDATE", "DELETE"))
    ]


def test_outside_a_transaction_recall_only_reads_and_its_bookkeeping_lands_behind_it(
    transactional_db, agent, settings
):
    """As the worker calls it (autocommit), recall writes nothing on the caller's connection:
    the access counts, the MemoryRecall rows (stamped with the recall's time) and the
    auto-pin rule are written by the process's writer thread, in batches, moments later;
    memory_recall_flush() waits for them."""
    settings.MEMORY_AUTO_PIN_RECALLS = 3
    tea = memory_remember(agent_id=agent.pk, user_key="u", text="The customer drinks green tea.")
    runs = [uuid.uuid4() for _ in range(3)]
    before = timezone.now()
    with CaptureQueriesContext(connection) as queries:
        for run in runs:
            got = memory_recall(agent_id=agent.pk, user_key="u", query="tea", k=1, run_id=run)
            assert [r.id for r in got] == [tea.pk]
    after = timezone.now()
    assert _writes(queries) == []

    assert memory_recall_flush()
    tea.refresh_from_db()
    assert tea.access_count == 3 and before <= tea.last_accessed_at <= after
    recalls = list(MemoryRecall.objects.filter(memory=tea).order_by("created_at"))
    assert [r.run_id for r in recalls] == runs
    assert all(before <= r.created_at <= after for r in recalls)
    assert tea.pinned  # the third recall reached the threshold
    pin = MemoryEvent.objects.get(memory=tea, action=MemoryAction.AUTO_PINNED)
    assert pin.run_id == runs[-1] and pin.changes["access_count"] == 3


def test_recall_bookkeeping_lands_without_anyone_waiting_for_it(transactional_db, agent):
    tea = memory_remember(agent_id=agent.pk, user_key="u", text="The customer drinks green tea.")
    run = uuid.uuid4()
    memory_recall(agent_id=agent.pk, user_key="u", query="tea", k=1, run_id=run)
    until(
        lambda: MemoryRecall.objects.filter(memory=tea, run_id=run).exists(),
        seconds=10,
        message="the recall's MemoryRecall row was never written",
    )
    until(lambda: Memory.objects.get(pk=tea.pk).access_count == 1, seconds=10)


def test_recall_bookkeeping_counts_repeats_and_skips_memories_deleted_meanwhile(agent):
    tea = memory_remember(agent_id=agent.pk, user_key="u", text="The customer drinks green tea.")
    gone = memory_remember(agent_id=agent.pk, user_key="u", text="The customer is called Ana.")
    gone_pk = gone.pk
    memory_delete(memory=gone, actor=None)
    run = uuid.uuid4()
    now = timezone.now()
    memory_recall_uses_write(
        uses=[
            RecallUse(tea.pk, run, 0.9, now - timedelta(seconds=5)),
            RecallUse(gone_pk, run, 0.8, now),
            RecallUse(tea.pk, None, 0.7, now),
        ]
    )
    tea.refresh_from_db()
    assert tea.access_count == 2 and tea.last_accessed_at == now
    assert list(MemoryRecall.objects.values_list("memory_id", "run_id", "score")) == [
        (tea.pk, run, 0.9)
    ]
