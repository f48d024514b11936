"""Writes to long-term memory. Every change leaves a MemoryEvent (who, when, what).

Duplicates are merged, not stored twice: a memory whose normalised text already exists in
the same scope (agent + user_key), or whose vector is at least DEDUPE_SIMILARITY similar
to one there and states the same numbers, bumps that memory instead.

Auto-pin rule: a memory that recall has returned MEMORY_AUTO_PIN_RECALLS times (its
access_count; merges count too) is pinned by "system", unless a person unpinned it
before, and only while its own scope has fewer than AUTO_PIN_MAX_PER_SCOPE pinned
memories. MEMORY_AUTO_PIN_RECALLS=0 turns the rule off.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Q
from django.db.models.functions import Greatest, Least
from django.utils import timezone

from memory.deferred import DeferredWriter
from memory.embedders import get_embedder, vector_text
from memory.errors import MemoryInputError
from memory.models import (
    Memory,
    MemoryAction,
    MemoryEvent,
    MemoryKind,
    MemoryRecall,
    MemoryRevision,
)
from memory.selectors import RecalledMemory, memory_rank, memory_search
from memory.text import content_hash, numbers_in
from tracing.platform.enqueue import queue_job_on_commit
from tracing.platform.logs import get_logger
from tracing.platform.types import Actor, RunId

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager

    from tracing.emit import Tracer

log = get_logger(__name__)

MAX_TEXT_CHARS = 2000
MAX_USER_KEY_CHARS = 200
MAX_TTL_SECONDS = 10 * 365 * 86400
DEDUPE_SIMILARITY = 0.95
MERGE_IMPORTANCE_BUMP = 0.1
AUTO_PIN_MAX_PER_SCOPE = 10
EXPIRE_BATCH = 1000


class _Unset:
    """An argument not given (None is a value here)."""


_UNSET = _Unset()


class _Span(Protocol):
    def set(self, **attributes: object) -> None: ...

    def fail(self, error_class: str, message: str) -> None: ...


class _NullSpan:
    def set(self, **attributes: object) -> None:
        pass

    def fail(self, error_class: str, message: str) -> None:
        pass


class _NullContext:
    def __enter__(self) -> _NullSpan:
        return _NullSpan()

    def __exit__(self, *exc: object) -> None:
        return None


def _traced(
    tracer: Tracer | None, name: str, **attributes: object
) -> AbstractContextManager[_Span]:
    """`tracer.span(...)` when a tracer is given, else a context that records nothing."""
    return tracer.span(name, **attributes) if tracer is not None else _NullContext()


# -- validation -------------------------------------------------------------------------


def _clean_text(text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise MemoryInputError("text", "text must be a non-empty string.")
    text = text.strip()
    if len(text) > MAX_TEXT_CHARS:
        raise MemoryInputError(
            "text", f"text is {len(text)} characters; a memory holds at most {MAX_TEXT_CHARS}."
        )
    return text


def _clean_importance(importance: object) -> float:
    if isinstance(importance, bool) or not isinstance(importance, int | float):
        raise MemoryInputError("importance", "importance must be a number from 0 to 1.")
    value = float(importance)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise MemoryInputError("importance", "importance must be a number from 0 to 1.")
    return value


def _clean_kind(kind: object) -> str:
    if kind not in MemoryKind.values:
        raise MemoryInputError("kind", f"kind must be one of {', '.join(MemoryKind.values)}.")
    return str(kind)


def _clean_ttl(ttl_seconds: object) -> int | None:
    if ttl_seconds is None:
        return None
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int):
        raise MemoryInputError("ttl_seconds", "ttl_seconds must be a whole number of seconds.")
    if not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise MemoryInputError(
            "ttl_seconds", f"ttl_seconds must be from 1 to {MAX_TTL_SECONDS} (ten years)."
        )
    return ttl_seconds


def _clean_user_key(user_key: object) -> str:
    if not isinstance(user_key, str) or len(user_key) > MAX_USER_KEY_CHARS:
        raise MemoryInputError(
            "user_key", f"user_key must be a string of at most {MAX_USER_KEY_CHARS} characters."
        )
    return user_key


# -- audit ------------------------------------------------------------------------------


def _person(actor: Actor) -> User | None:
    return actor if isinstance(actor, User) else None


def _actor_label(actor: User | None, run_id: RunId | None) -> str:
    if actor is not None:
        return actor.get_username()
    if run_id is not None:
        return f"run {run_id}"
    return "system"


def _event(
    memory: Memory,
    action: str,
    *,
    actor: User | None = None,
    run_id: RunId | None = None,
    changes: dict[str, Any] | None = None,
) -> MemoryEvent:
    return MemoryEvent.objects.create(
        memory=memory,
        memory_ref=memory.pk,
        agent_id=memory.agent_id,
        user_key=memory.user_key,
        action=action,
        actor=actor,
        actor_label=_actor_label(actor, run_id),
        run_id=run_id,
        changes=changes or {},
    )


def _snapshot(memory: Memory) -> dict[str, Any]:
    return {
        "text": memory.text,
        "kind": memory.kind,
        "importance": memory.importance,
        "pinned": memory.pinned,
        "access_count": memory.access_count,
        "source_run_id": str(memory.source_run_id) if memory.source_run_id else None,
        "source_step": memory.source_step,
        "created_at": memory.created_at.isoformat() if memory.created_at else None,
        "expires_at": memory.expires_at.isoformat() if memory.expires_at else None,
    }


# -- remember ---------------------------------------------------------------------------


def _merged_expiry(old: datetime | None, new: datetime | None) -> datetime | None:
    # Permanent wins; otherwise the later expiry.
    if old is None or new is None:
        return None
    return max(old, new)


def _merge(
    memory: Memory,
    *,
    importance: float,
    expires_at: datetime | None,
    run_id: RunId | None,
    step: int | None,
    reason: str,
    incoming_text: str,
    similarity: float | None = None,
) -> Memory:
    now = timezone.now()
    Memory.objects.filter(pk=memory.pk).update(
        importance=Least(Greatest(F("importance"), importance) + MERGE_IMPORTANCE_BUMP, 1.0),
        access_count=F("access_count") + 1,
        last_accessed_at=now,
        expires_at=_merged_expiry(memory.expires_at, expires_at),
    )
    memory.refresh_from_db()
    changes: dict[str, Any] = {"reason": reason, "text": incoming_text, "step": step}
    if similarity is not None:
        changes["similarity"] = round(similarity, 4)
    _event(memory, MemoryAction.MERGED, run_id=run_id, changes=changes)
    return memory


def memory_remember(
    *,
    agent_id: int,
    user_key: str,
    text: str,
    kind: str = "fact",
    importance: float = 0.5,
    source_run_id: RunId | None = None,
    source_step: int | None = None,
    ttl_seconds: int | None = None,
    tracer: Tracer | None = None,
) -> Memory:
    """Store a memory in the scope (agent, user_key; '' = agent-wide), embedding it inline
    (this runs in the worker), or merge it into a duplicate. Bad input raises
    MemoryInputError naming the field, with a message the model can read."""
    with _traced(tracer, "memory.write", agent_id=agent_id) as span:
        text = _clean_text(text)
        kind = _clean_kind(kind)
        importance = _clean_importance(importance)
        ttl_seconds = _clean_ttl(ttl_seconds)
        user_key = _clean_user_key(user_key)
        digest = content_hash(text)
        expires_at = timezone.now() + timedelta(seconds=ttl_seconds) if ttl_seconds else None
        span.set(
            **{
                "memory.kind": kind,
                "memory.text": text[:200],
                "memory.scoped_to_user": bool(user_key),
            }
        )
        merge = functools.partial(
            _merge,
            importance=importance,
            expires_at=expires_at,
            run_id=source_run_id,
            step=source_step,
            incoming_text=text,
        )

        with transaction.atomic():
            same = (
                Memory.objects.select_for_update()
                .defer("embedding")
                .filter(agent_id=agent_id, user_key=user_key, content_hash=digest)
                .first()
            )
            if same is not None:
                memory = merge(same, reason="same_text")
                span.set(**{"memory.id": memory.pk, "memory.merged": "same_text"})
                return memory

        embedder = get_embedder()
        vector = embedder.embed([text])[0]
        with transaction.atomic():
            nearest = memory_search(
                agent_id=agent_id,
                embedding=vector,
                limit=1,
                user_keys=[user_key],
                now=timezone.now(),
                embedder_name=embedder.name,
            ).memories
            if (
                nearest
                and nearest[0].similarity >= DEDUPE_SIMILARITY
                and numbers_in(nearest[0].text) == numbers_in(text)
            ):
                memory = merge(nearest[0], reason="similar", similarity=nearest[0].similarity)
                span.set(**{"memory.id": memory.pk, "memory.merged": "similar"})
                return memory
            try:
                with transaction.atomic():
                    memory = Memory.objects.create(
                        agent_id=agent_id,
                        user_key=user_key,
                        text=text,
                        kind=kind,
                        importance=importance,
                        content_hash=digest,
                        embedding=vector,
                        embedder=embedder.name,
                        source_run_id=source_run_id,
                        source_step=source_step,
                        expires_at=expires_at,
                    )
            except IntegrityError:
                # Another worker stored the same text a moment ago.
                same = Memory.objects.defer("embedding").get(
                    agent_id=agent_id, user_key=user_key, content_hash=digest
                )
                memory = merge(same, reason="same_text")
                span.set(**{"memory.id": memory.pk, "memory.merged": "same_text"})
                return memory
            _event(
                memory,
                MemoryAction.CREATED,
                run_id=source_run_id,
                changes={"text": text, "kind": kind, "importance": importance, "step": source_step},
            )
        span.set(**{"memory.id": memory.pk, "memory.merged": ""})
        return memory


@dataclass(frozen=True)
class MemoryDraft:
    """One memory for `memory_remember_many`, with `memory_remember`'s defaults."""

    text: str
    kind: str = "fact"
    importance: float = 0.5
    ttl_seconds: int | None = None


@dataclass
class _Item:
    index: int
    text: str
    kind: str
    importance: float
    digest: str
    expires_at: datetime | None
    vector: Any = None
    vector_sql: str = ""  # pgvector's text form, made once
    memory: Memory | None = None
    merge_into: _Item | Memory | None = None
    reason: str = ""
    similarity: float | None = None


def _draft_item(index: int, draft: MemoryDraft, now: datetime) -> _Item:
    try:
        text = _clean_text(draft.text)
        kind = _clean_kind(draft.kind)
        importance = _clean_importance(draft.importance)
        ttl_seconds = _clean_ttl(draft.ttl_seconds)
    except MemoryInputError as exc:
        raise MemoryInputError(exc.field or "text", f"memory {index + 1}: {exc}") from exc
    expires_at = now + timedelta(seconds=ttl_seconds) if ttl_seconds else None
    return _Item(index, text, kind, importance, content_hash(text), expires_at)


def memory_remember_many(
    *,
    agent_id: int,
    user_key: str,
    drafts: list[MemoryDraft],
    source_run_id: RunId | None = None,
    source_step: int | None = None,
    tracer: Tracer | None = None,
) -> list[Memory]:
    """`memory_remember` for several memories of one scope at once: the same validation
    (all drafts before anything is written; the message names the draft), the same merging
    (a draft that repeats, or nearly repeats with the same numbers, a memory of the scope or
    an earlier draft bumps that memory), but one embedding call, one nearest-neighbour query,
    one INSERT and one INSERT of audit events for all of them. Returns each draft's memory,
    in order (a merged draft, the memory it was merged into)."""
    with _traced(tracer, "memory.write", agent_id=agent_id) as span:
        user_key = _clean_user_key(user_key)
        now = timezone.now()
        items = [_draft_item(i, draft, now) for i, draft in enumerate(drafts)]
        span.set(**{"memory.count": len(items), "memory.scoped_to_user": bool(user_key)})
        if not items:
            return []
        existing = {
            m.content_hash: m
            for m in Memory.objects.defer("embedding").filter(
                agent_id=agent_id,
                user_key=user_key,
                content_hash__in=[item.digest for item in items],
            )
        }
        first_of: dict[str, _Item] = {}
        fresh: list[_Item] = []
        for item in items:
            if item.digest in existing:
                item.merge_into, item.reason = existing[item.digest], "same_text"
            elif item.digest in first_of:
                item.merge_into, item.reason = first_of[item.digest], "same_text"
            else:
                first_of[item.digest] = item
                fresh.append(item)
        embedder = get_embedder()
        if fresh:
            vectors = embedder.embed([item.text for item in fresh])
            for item, vector in zip(fresh, vectors, strict=True):
                item.vector = vector
                item.vector_sql = vector_text(vector)
        with transaction.atomic():
            created = _remember_fresh(
                agent_id=agent_id,
                user_key=user_key,
                fresh=fresh,
                embedder_name=embedder.name,
                now=now,
                run_id=source_run_id,
                step=source_step,
            )
            for item in items:
                if item.merge_into is None:
                    continue
                target = item.merge_into
                memory = target if isinstance(target, Memory) else target.memory
                assert memory is not None  # an earlier draft, stored or merged above
                item.memory = _merge(
                    memory,
                    importance=item.importance,
                    expires_at=item.expires_at,
                    run_id=source_run_id,
                    step=source_step,
                    reason=item.reason,
                    incoming_text=item.text,
                    similarity=item.similarity,
                )
            MemoryEvent.objects.bulk_create(
                [
                    MemoryEvent(
                        memory=item.memory,
                        memory_ref=item.memory.pk,
                        agent_id=agent_id,
                        user_key=user_key,
                        action=MemoryAction.CREATED,
                        actor_label=_actor_label(None, source_run_id),
                        run_id=source_run_id,
                        changes={
                            "text": item.text,
                            "kind": item.kind,
                            "importance": item.importance,
                            "step": source_step,
                        },
                    )
                    for item in created
                    if item.memory is not None
                ]
            )
        memories = [item.memory for item in items]
        span.set(
            **{
                "memory.ids": [m.pk for m in memories if m is not None],
                "memory.created": len(created),
                "memory.merged": len(items) - len(created),
            }
        )
        return [m for m in memories if m is not None]


_NEAREST_SQL = """
SELECT q.i, m.id, 1 - (m.embedding <=> q.v) AS similarity
FROM unnest(%(indexes)s::int[], %(vectors)s::vector[]) AS q(i, v)
CROSS JOIN LATERAL (
    SELECT id, embedding FROM {table}
    WHERE agent_id = %(agent_id)s AND user_key = %(user_key)s AND embedding IS NOT NULL
      AND embedder = %(embedder)s AND (expires_at IS NULL OR expires_at > %(now)s)
    ORDER BY {order} LIMIT 1
) AS m
"""

_INSERT_SQL = """
INSERT INTO {table} (agent_id, user_key, text, kind, importance, metadata, pinned,
    content_hash, embedding, embedder, source_run_id, source_step, created_at, access_count,
    expires_at)
SELECT %(agent_id)s, %(user_key)s, d.text, d.kind, d.importance, '{{}}'::jsonb, false,
    d.digest, d.embedding, %(embedder)s, %(run_id)s, %(step)s, %(now)s, 0, d.expires_at
FROM unnest(%(texts)s::text[], %(kinds)s::text[], %(importances)s::float8[],
    %(digests)s::text[], %(vectors)s::vector[], %(expiries)s::timestamptz[])
    AS d(text, kind, importance, digest, embedding, expires_at)
ON CONFLICT (agent_id, user_key, content_hash) DO NOTHING
RETURNING id, content_hash
"""


def _remember_fresh(
    *,
    agent_id: int,
    user_key: str,
    fresh: list[_Item],
    embedder_name: str,
    now: datetime,
    run_id: RunId | None,
    step: int | None,
) -> list[_Item]:
    """Store the drafts of memory_remember_many that repeat no text, unless one is a near
    duplicate (memory_remember's rule) of the scope's nearest memory or of an earlier draft;
    returns those stored. Runs in the caller's transaction."""
    if not fresh:
        return []
    table = Memory._meta.db_table
    scope_rows = Memory.objects.filter(agent_id=agent_id, user_key=user_key)[
        : settings.MEMORY_EXACT_SEARCH_MAX + 1
    ].count()
    nearest: dict[int, tuple[int, float]] = {}
    if scope_rows:
        exact = scope_rows <= settings.MEMORY_EXACT_SEARCH_MAX
        with transaction.atomic(), connection.cursor() as cursor:
            if not exact:
                cursor.execute(
                    "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), "
                    "set_config('hnsw.ef_search', '200', true), "
                    "set_config('enable_sort', 'off', true)"
                )
            cursor.execute(
                _NEAREST_SQL.format(
                    table=table,
                    order="(embedding <=> q.v) + 0" if exact else "embedding <=> q.v",
                ),
                {
                    "indexes": [item.index for item in fresh],
                    "vectors": [item.vector_sql for item in fresh],
                    "agent_id": agent_id,
                    "user_key": user_key,
                    "embedder": embedder_name,
                    "now": now,
                },
            )
            nearest = {i: (pk, float(similarity)) for i, pk, similarity in cursor.fetchall()}
            transaction.set_rollback(True)  # read only; undoes the set_config()s
        near_ids = {pk for pk, _ in nearest.values()}
        near_rows = {m.pk: m for m in Memory.objects.defer("embedding").filter(pk__in=near_ids)}
    else:
        near_rows = {}
    stored: list[_Item] = []
    for item in fresh:
        best: _Item | Memory | None = None
        best_similarity = -1.0
        if item.index in nearest:
            pk, best_similarity = nearest[item.index]
            best = near_rows.get(pk)
        for earlier in stored:
            similarity = float(np.dot(earlier.vector, item.vector))
            if similarity > best_similarity:
                best, best_similarity = earlier, similarity
        best_text = best.text if best is not None else ""
        if (
            best is not None
            and best_similarity >= DEDUPE_SIMILARITY
            and numbers_in(best_text) == numbers_in(item.text)
        ):
            item.merge_into, item.reason, item.similarity = best, "similar", best_similarity
        else:
            stored.append(item)
    if not stored:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT_SQL.format(table=table),
            {
                "agent_id": agent_id,
                "user_key": user_key,
                "embedder": embedder_name,
                "run_id": run_id,
                "step": step,
                "now": now,
                "texts": [item.text for item in stored],
                "kinds": [item.kind for item in stored],
                "importances": [item.importance for item in stored],
                "digests": [item.digest for item in stored],
                "vectors": [item.vector_sql for item in stored],
                "expiries": [item.expires_at for item in stored],
            },
        )
        ids = {digest: pk for pk, digest in cursor.fetchall()}
    created = []
    for item in stored:
        new_id = ids.get(item.digest)
        if new_id is None:
            # Another worker stored the same text a moment ago.
            item.merge_into = Memory.objects.defer("embedding").get(
                agent_id=agent_id, user_key=user_key, content_hash=item.digest
            )
            item.reason = "same_text"
            continue
        item.memory = Memory(
            pk=new_id,
            agent_id=agent_id,
            user_key=user_key,
            text=item.text,
            kind=item.kind,
            importance=item.importance,
            content_hash=item.digest,
            embedding=item.vector,
            embedder=embedder_name,
            source_run_id=run_id,
            source_step=step,
            created_at=now,
            expires_at=item.expires_at,
        )
        item.memory._state.adding = False
        created.append(item)
    return created


# -- recall -----------------------------------------------------------------------------


def memory_recall(
    *,
    agent_id: int,
    user_key: str,
    query: str,
    k: int = 5,
    run_id: RunId | None = None,
    tracer: Tracer | None = None,
    also_user_key: str = "",
) -> list[RecalledMemory]:
    """Recall for a run: the memories `memory.selectors.memory_rank` picks (in the user's
    scope and `also_user_key`'s, read only), recorded as used (`memory_recall_record`), in one
    `memory.recall` span."""
    with _traced(tracer, "memory.recall", **{"memory.k": k, "agent_id": agent_id}) as span:
        now = timezone.now()
        ranking = memory_rank(
            agent_id=agent_id,
            user_key=user_key,
            query=query,
            k=k,
            now=now,
            also_user_key=also_user_key,
        )
        if ranking.recalled:
            memory_recall_record(recalled=ranking.recalled, run_id=run_id, now=now)
        if not ranking.strategy:
            span.set(**{"memory.returned": 0})
        else:
            span.set(
                **{
                    "memory.strategy": ranking.strategy,
                    "memory.scope_size": ranking.scope_size,
                    "memory.candidates": ranking.candidates,
                    "memory.returned": len(ranking.recalled),
                    "memory.ids": [r.id for r in ranking.recalled],
                    "memory.embedder": ranking.embedder,
                }
            )
        return ranking.recalled


@dataclass(frozen=True)
class RecallUse:
    """One memory a recall returned: what its bookkeeping writes."""

    memory_id: int
    run_id: RunId | None
    score: float
    at: datetime


def memory_recall_record(
    *, recalled: list[RecalledMemory], run_id: RunId | None = None, now: datetime | None = None
) -> None:
    """Count a recall: access_count + 1 and last_accessed_at = now on each memory, a
    MemoryRecall row each when `run_id` is given, then the auto-pin rule.

    Inside a caller's transaction this is written there and then (it commits or rolls back
    with the caller's work). Otherwise it is written behind the caller's back, off the
    step's hot path: queued for this process's writer thread, which writes whatever has
    queued in one batched statement, normally within milliseconds; `memory_recall_flush()`
    waits for it. The returned objects show the new count at once."""
    if not recalled:
        return
    now = now or timezone.now()
    uses = [RecallUse(r.id, run_id, r.score, now) for r in recalled]
    for r in recalled:
        r.memory.access_count += 1
        r.memory.last_accessed_at = now
    if connection.in_atomic_block:
        memory_recall_uses_write(uses=uses)
    else:
        _recall_writer.add(uses)


def memory_recall_flush(timeout: float = 10.0) -> bool:
    """Wait until the recall bookkeeping queued in this process so far is written; False if
    it took longer than `timeout` seconds. A forking worker's horse must call it before it
    exits (os._exit runs no exit handler); other processes flush at exit by themselves."""
    return _recall_writer.flush(timeout)


_RECALL_USES_SQL = """
WITH used AS (
    SELECT id, count(*) AS n, max(at) AS at
    FROM unnest(%(ids)s::bigint[], %(ats)s::timestamptz[]) AS u(id, at)
    GROUP BY id
), recalls AS (
    INSERT INTO {recall_table} (memory_id, run_id, score, created_at)
    SELECT r.id, r.run_id, r.score, r.at
    FROM unnest(%(ids)s::bigint[], %(runs)s::uuid[], %(scores)s::float8[], %(ats)s::timestamptz[])
        AS r(id, run_id, score, at)
    WHERE r.run_id IS NOT NULL AND EXISTS (SELECT 1 FROM {memory_table} m WHERE m.id = r.id)
)
UPDATE {memory_table} AS m
SET access_count = m.access_count + used.n,
    last_accessed_at = GREATEST(m.last_accessed_at, used.at)
FROM used WHERE m.id = used.id
RETURNING m.id, m.agent_id, m.user_key, m.access_count, m.pinned, m.metadata
"""


def memory_recall_uses_write(*, uses: list[RecallUse]) -> None:
    """Write recall bookkeeping in one statement: the access counts (a memory recalled n
    times gets + n, and the latest time), the MemoryRecall rows (stamped with the time of
    the recall, not of the write; memories deleted meanwhile are skipped), then the
    auto-pin rule for memories now at its threshold."""
    if not uses:
        return
    outer_transaction = connection.in_atomic_block
    sql = _RECALL_USES_SQL.format(
        recall_table=MemoryRecall._meta.db_table, memory_table=Memory._meta.db_table
    )
    with transaction.atomic(), connection.cursor() as cursor:
        if not outer_transaction:
            # Bookkeeping only (access counts, provenance): a crash may lose the last
            # few hundred ms of it, and the writer does not wait for a WAL flush.
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        cursor.execute(
            sql,
            {
                "ids": [u.memory_id for u in uses],
                "runs": [u.run_id for u in uses],
                "scores": [u.score for u in uses],
                "ats": [u.at for u in uses],
            },
        )
        bumped = cursor.fetchall()
    threshold = settings.MEMORY_AUTO_PIN_RECALLS
    if threshold <= 0:
        return
    candidates = [
        row
        for row in bumped
        if not row[4] and row[3] >= threshold and not _loaded_json(row[5]).get("auto_pin_blocked")
    ]
    if not candidates:
        return
    # One count for the scopes involved: a full scope (common once its popular memories are
    # pinned) is skipped without a query per memory.
    scopes = {(row[1], row[2]) for row in candidates}
    pinned_in = dict.fromkeys(scopes, 0)
    scope_q = Q()
    for agent_id, user_key in scopes:
        scope_q |= Q(agent_id=agent_id, user_key=user_key)
    for agent_id, user_key, n in (
        Memory.objects.filter(scope_q, pinned=True)
        .values("agent_id", "user_key")
        .annotate(n=Count("id"))
        .values_list("agent_id", "user_key", "n")
    ):
        pinned_in[(agent_id, user_key)] = n
    last_run = {u.memory_id: u.run_id for u in uses}
    for pk, agent_id, user_key, access_count, pinned, metadata in candidates:
        if pinned_in[(agent_id, user_key)] >= AUTO_PIN_MAX_PER_SCOPE:
            continue
        memory = Memory(
            pk=pk,
            agent_id=agent_id,
            user_key=user_key,
            access_count=access_count,
            pinned=pinned,
            metadata=_loaded_json(metadata),
        )
        if memory_auto_pin(memories=[memory], run_id=last_run.get(pk)):
            pinned_in[(agent_id, user_key)] += 1


def _loaded_json(value: object) -> dict[str, Any]:
    loaded = json.loads(value) if isinstance(value, str) else value
    return loaded if isinstance(loaded, dict) else {}


_recall_writer: DeferredWriter[RecallUse] = DeferredWriter(
    name="memory-recall", write=lambda uses: memory_recall_uses_write(uses=uses)
)


# -- edits from people --------------------------------------------------------------------


def memory_create(
    *,
    agent_id: int,
    user_key: str,
    text: str,
    kind: str = "fact",
    importance: float = 0.5,
    actor: Actor,
) -> Memory:
    """A memory written by a person on the memory pages; embedded by a job after commit."""
    person = _person(actor)
    text = _clean_text(text)
    kind = _clean_kind(kind)
    importance = _clean_importance(importance)
    user_key = _clean_user_key(user_key)
    digest = content_hash(text)
    with transaction.atomic():
        if Memory.objects.filter(
            agent_id=agent_id, user_key=user_key, content_hash=digest
        ).exists():
            raise MemoryInputError("text", "Another memory in this scope already says this.")
        memory = Memory.objects.create(
            agent_id=agent_id,
            user_key=user_key,
            text=text,
            kind=kind,
            importance=importance,
            content_hash=digest,
            edited_by=person,
        )
        _event(
            memory,
            MemoryAction.CREATED,
            actor=person,
            changes={"text": text, "kind": kind, "importance": importance},
        )
        enqueue_embedding(memory_ids=[memory.pk])
    return memory


def memory_update(
    *,
    memory: Memory,
    text: str | _Unset = _UNSET,
    pinned: bool | _Unset = _UNSET,
    importance: float | _Unset = _UNSET,
    actor: Actor,
) -> Memory:
    """Change a memory's text, pin or importance. A new text keeps the previous one as a
    MemoryRevision and is embedded by a job after commit (recall skips it meanwhile)."""
    person = _person(actor)
    with transaction.atomic():
        current = Memory.objects.select_for_update().defer("embedding").get(pk=memory.pk)
        changes: dict[str, Any] = {}
        update: dict[str, Any] = {}
        if text is not _UNSET:
            new_text = _clean_text(text)
            if new_text != current.text:
                digest = content_hash(new_text)
                clash = (
                    Memory.objects.filter(
                        agent_id=current.agent_id, user_key=current.user_key, content_hash=digest
                    )
                    .exclude(pk=current.pk)
                    .first()
                )
                if clash is not None:
                    raise MemoryInputError(
                        "text", f"Another memory in this scope (#{clash.pk}) already says this."
                    )
                MemoryRevision.objects.create(memory=current, text=current.text, edited_by=person)
                changes["text"] = [current.text, new_text]
                update.update(text=new_text, content_hash=digest, embedding=None, embedder="")
        if importance is not _UNSET:
            value = _clean_importance(importance)
            if value != current.importance:
                changes["importance"] = [current.importance, value]
                update["importance"] = value
        pin_action = None
        if pinned is not _UNSET and bool(pinned) != current.pinned:
            pin_action = MemoryAction.PINNED if pinned else MemoryAction.UNPINNED
            metadata = dict(current.metadata)
            if pinned:
                metadata.pop("auto_pin_blocked", None)
            else:
                metadata["auto_pin_blocked"] = True
            update.update(pinned=bool(pinned), metadata=metadata)
        if not update:
            return current
        update["edited_by"] = actor
        Memory.objects.filter(pk=current.pk).update(**update)
        current.refresh_from_db()
        if changes:
            _event(current, MemoryAction.UPDATED, actor=person, changes=changes)
        if pin_action:
            _event(current, pin_action, actor=person)
        if "text" in changes:
            enqueue_embedding(memory_ids=[current.pk])
    return current


def memory_delete(*, memory: Memory, actor: Actor) -> None:
    """Delete a memory; the audit trail keeps a snapshot, including earlier texts."""
    person = _person(actor)
    with transaction.atomic():
        current = Memory.objects.select_for_update().defer("embedding").filter(pk=memory.pk).first()
        if current is None:
            return
        snapshot = _snapshot(current)
        snapshot["revisions"] = list(
            current.revisions.order_by("created_at").values_list("text", flat=True)
        )
        MemoryEvent.objects.create(
            memory=None,
            memory_ref=current.pk,
            agent_id=current.agent_id,
            user_key=current.user_key,
            action=MemoryAction.DELETED,
            actor=person,
            actor_label=_actor_label(person, None),
            changes=snapshot,
        )
        current.delete()


def memory_auto_pin(*, memories: list[Memory], run_id: RunId | None = None) -> list[Memory]:
    """Apply the auto-pin rule (module docstring) to memories a recall just returned."""
    threshold = settings.MEMORY_AUTO_PIN_RECALLS
    if threshold <= 0:
        return []
    pinned = []
    for memory in memories:
        if memory.pinned or memory.access_count < threshold:
            continue
        if (memory.metadata or {}).get("auto_pin_blocked"):
            continue
        with transaction.atomic():
            in_scope = Memory.objects.filter(
                agent_id=memory.agent_id, user_key=memory.user_key, pinned=True
            ).count()
            if in_scope >= AUTO_PIN_MAX_PER_SCOPE:
                continue
            if Memory.objects.filter(pk=memory.pk, pinned=False).update(pinned=True):
                memory.pinned = True
                _event(
                    memory,
                    MemoryAction.AUTO_PINNED,
                    run_id=run_id,
                    changes={"access_count": memory.access_count, "threshold": threshold},
                )
                pinned.append(memory)
    return pinned


# -- lifetime ---------------------------------------------------------------------------


def memory_expire(*, now: datetime | None = None, batch_size: int = EXPIRE_BATCH) -> int:
    """Delete memories whose time-to-live has passed, in batches (one transaction each),
    leaving an `expired` audit event with a snapshot for each. Returns how many."""
    now = now or timezone.now()
    total = 0
    while True:
        with transaction.atomic():
            batch = list(
                Memory.objects.filter(expires_at__lte=now)
                .defer("embedding")
                .order_by("expires_at", "id")
                .select_for_update(skip_locked=True)[:batch_size]
            )
            if not batch:
                return total
            ids = [m.pk for m in batch]
            MemoryEvent.objects.bulk_create(
                [
                    MemoryEvent(
                        memory=None,
                        memory_ref=m.pk,
                        agent_id=m.agent_id,
                        user_key=m.user_key,
                        action=MemoryAction.EXPIRED,
                        actor_label="system",
                        changes=_snapshot(m),
                    )
                    for m in batch
                ]
            )
            Memory.objects.filter(pk__in=ids).delete()
            total += len(batch)
        if len(batch) < batch_size:
            return total


# -- embedding ----------------------------------------------------------------------------
EMBED_SWEEP_BATCH = 1000


def enqueue_embedding(*, memory_ids: list[int]) -> None:
    """Queue `memory.jobs.memory_embed_job` once the caller commits. Redis being away is
    logged, not raised: the memory is saved, shows "not embedded" until
    `memories_embed_missing` (every minute) embeds it."""
    queue_job_on_commit(
        queue=settings.MAINTENANCE_QUEUE,
        func="memory.jobs.memory_embed_job",
        args=(memory_ids,),
        sweep="memories_embed_missing",
    )


def memories_embed_missing(
    *, older_than: timedelta = timedelta(minutes=1), now: datetime | None = None
) -> int:
    """The scheduler's sweep for vectors whose job Redis never got (it was away when the
    memory was saved) or that failed: embed the memories still without one, oldest first,
    EMBED_SWEEP_BATCH at a time. Returns how many."""
    before = (now or timezone.now()) - older_than
    ids = list(
        Memory.objects.filter(embedding__isnull=True, created_at__lt=before)
        .order_by("pk")
        .values_list("pk", flat=True)[:EMBED_SWEEP_BATCH]
    )
    return memory_embed(memory_ids=ids) if ids else 0


def memory_embed(
    *,
    memory_ids: list[int] | None = None,
    everything: bool = False,
    batch_size: int = 256,
    progress: Callable[[int], object] | None = None,
) -> int:
    """Embed memories with the current embedder: those without a vector or with another
    embedder's (all of them with `everything`), optionally only `memory_ids`. Rows whose
    text changed meanwhile are left for the job that change queued. Returns how many.
    `progress(n)` is called after each batch."""
    embedder = get_embedder()
    rows = Memory.objects.all()
    if memory_ids is not None:
        rows = rows.filter(pk__in=memory_ids)
    if not everything:
        rows = rows.filter(Q(embedding__isnull=True) | ~Q(embedder=embedder.name))
    done = 0
    last_id = 0
    while True:
        batch = list(
            rows.filter(pk__gt=last_id)
            .order_by("pk")
            .values_list("pk", "text", "content_hash")[:batch_size]
        )
        if not batch:
            return done
        last_id = batch[-1][0]
        vectors = embedder.embed([text for _, text, _ in batch])
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Memory._meta.db_table} AS m SET embedding = v.e::vector, embedder = %s "  # noqa: S608
                "FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS v(id, h, e) "
                "WHERE m.id = v.id AND m.content_hash = v.h",
                [
                    embedder.name,
                    [pk for pk, _, _ in batch],
                    [digest for _, _, digest in batch],
                    [vector_text(vector) for vector in vectors],
                ],
            )
            done += cursor.rowcount
        if progress is not None:
            progress(len(batch))
