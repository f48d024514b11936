"""Reads of long-term memory: scoped vector search, ranking for recall, pinned memories,
and the queries behind the memory pages.

Scope: an agent's memories with `user_key == ''` (agent-wide) or equal to the
conversation's user. Another user's memories are never candidates: the filter is part of
the SQL, not applied to results afterwards.

Search strategy (the filtered-HNSW pitfall): an HNSW scan applies the WHERE clause after
the index walk, so a scope that is a small part of the table either comes back short
(pgvector < 0.8, or iterative scans off) or walks most of the graph. `memory_search`
therefore counts the scope first (capped, on the (agent_id, user_key) index) and
- searches it exactly when it holds at most MEMORY_EXACT_SEARCH_MAX rows (always right,
  and faster than the index for such sets: see bench/recall.py and docs/memory.md);
- otherwise uses the HNSW index with pgvector 0.8's iterative scan (relaxed order,
  re-sorted here), which keeps walking until enough rows pass the filter.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from numpy.typing import ArrayLike

from memory.agents import MemoryAgent, agent_directory
from memory.embedders import get_embedder, vector_text
from memory.errors import MemoryInputError
from memory.models import Memory, MemoryEvent, MemoryRecall, MemoryRevision

MAX_RECALL_K = 50
PINNED_LIMIT = 20
# Re-ranking: similarity dominates; importance and recency break near-ties.
WEIGHT_SIMILARITY = 0.8
WEIGHT_IMPORTANCE = 0.1
WEIGHT_RECENCY = 0.1
RECENCY_HALF_LIFE_DAYS = 30.0
HNSW_EF_SEARCH = 200
HNSW_ITERATIVE_SCAN = "relaxed_order"

_COLUMNS = (
    "id, agent_id, user_key, text, kind, importance, metadata, pinned, content_hash, embedder, "
    "source_run_id, source_step, edited_by_id, created_at, last_accessed_at, access_count, expires_at"
)


_FIELD_NAMES = [name.strip() for name in _COLUMNS.split(",")]
_METADATA_AT = _FIELD_NAMES.index("metadata")
_IMPORTANCE_AT = _FIELD_NAMES.index("importance")
_LAST_ACCESSED_AT = _FIELD_NAMES.index("last_accessed_at")
_CREATED_AT = _FIELD_NAMES.index("created_at")
# "+ 0" keeps the planner off the HNSW index: it sorts the scope, found through the
# (agent_id, user_key) btree. Exact, and for small scopes faster than the graph.
_EXACT_ORDER = "(embedding <=> %(query)s::vector) + 0"


@dataclass(frozen=True)
class RecalledMemory:
    memory: Memory
    id: int
    text: str
    kind: str
    score: float
    similarity: float


@dataclass
class SearchResult:
    memories: list[Memory]  # each with `.similarity`, best first
    strategy: str  # "exact", "hnsw" or "empty"
    scope_size: int  # rows in scope, counted up to MEMORY_EXACT_SEARCH_MAX + 1


def _scope_user_keys(user_key: str, also: str = "") -> list[str]:
    """The agent-wide scope, the user's, and `also`: a scope read but never written (a fork
    reads its end user's memories and writes its own, docs/memory.md)."""
    return ["", *(key for key in dict.fromkeys((user_key, also)) if key)]


def _where(
    *,
    agent_id: int,
    embedder_name: str | None,
    user_keys: Sequence[str] | None,
    kinds: Sequence[str] | None,
    pinned: bool | None,
    now: datetime | None,
) -> tuple[str, dict[str, Any]]:
    clauses = ["agent_id = %(agent_id)s"]
    params: dict[str, Any] = {"agent_id": agent_id}
    if embedder_name is not None:
        clauses += ["embedding IS NOT NULL", "embedder = %(embedder)s"]
        params["embedder"] = embedder_name
    if user_keys is not None:
        names = []
        for i, key in enumerate(dict.fromkeys(user_keys)):
            params[f"user_{i}"] = key
            names.append(f"%(user_{i})s")
        clauses.append(f"user_key IN ({', '.join(names)})")
    if kinds:
        names = []
        for i, kind in enumerate(dict.fromkeys(kinds)):
            params[f"kind_{i}"] = kind
            names.append(f"%(kind_{i})s")
        clauses.append(f"kind IN ({', '.join(names)})")
    if pinned is not None:
        clauses.append("pinned" if pinned else "NOT pinned")
    if now is not None:
        clauses.append("(expires_at IS NULL OR expires_at > %(now)s)")
        params["now"] = now
    return " AND ".join(clauses), params


def memory_search(
    *,
    agent_id: int,
    embedding: ArrayLike,
    limit: int,
    user_keys: Sequence[str] | None,
    kinds: Sequence[str] | None = None,
    pinned: bool | None = None,
    now: datetime | None = None,
    embedder_name: str | None = None,
    strategy: str = "auto",
    iterative_scan: str = HNSW_ITERATIVE_SCAN,
    ef_search: int = HNSW_EF_SEARCH,
) -> SearchResult:
    """The `limit` memories nearest to `embedding` (cosine) within a scope.

    `user_keys=None` means every user of the agent (memory pages only); `now` excludes
    memories expired at that time; `strategy` is "auto", or "exact"/"hnsw" to force one;
    "planner" sends the HNSW-shaped query and lets Postgres pick the plan (iterative scan
    on, no count); `iterative_scan` ("relaxed_order", "strict_order", "off") and `ef_search`
    tune the HNSW path. The benchmark compares them all.
    """
    rows, used, scope_size = _search_rows(
        agent_id=agent_id,
        embedding=embedding,
        limit=limit,
        user_keys=user_keys,
        kinds=kinds,
        pinned=pinned,
        now=now,
        embedder_name=embedder_name,
        strategy=strategy,
        iterative_scan=iterative_scan,
        ef_search=ef_search,
    )
    memories = [_memory_from_row(row) for row in rows]
    for memory in memories:
        memory.similarity = 1.0 - float(memory.distance)
    memories.sort(key=lambda m: -m.similarity)  # relaxed order is only nearly sorted
    return SearchResult(memories, used, scope_size)


def _search_rows(
    *,
    agent_id: int,
    embedding: ArrayLike,
    limit: int,
    user_keys: Sequence[str] | None,
    kinds: Sequence[str] | None,
    pinned: bool | None,
    now: datetime | None,
    embedder_name: str | None,
    strategy: str,
    iterative_scan: str,
    ef_search: int,
) -> tuple[list[tuple[Any, ...]], str, int]:
    """memory_search's rows (_COLUMNS, then the distance), unsorted, and how it went."""
    table = Memory._meta.db_table
    where, params = _where(
        agent_id=agent_id,
        embedder_name=embedder_name or get_embedder().name,
        user_keys=user_keys,
        kinds=kinds,
        pinned=pinned,
        now=now,
    )
    exact_max = settings.MEMORY_EXACT_SEARCH_MAX
    scope_size = -1
    params.update(query=vector_text(embedding), limit=limit)
    if strategy == "auto":
        # One round trip: count the scope (capped, an index-only scan on the btree's own
        # columns: an upper bound, which the other conditions can only shrink) and, when it
        # holds at most MEMORY_EXACT_SEARCH_MAX rows, search it exactly (_EXACT_ORDER); for
        # a larger one the exact part never runs and only the count comes back.
        count_where, count_params = _where(
            agent_id=agent_id,
            embedder_name=None,
            user_keys=user_keys,
            kinds=None,
            pinned=None,
            now=None,
        )
        count_where = count_where.replace("%(", "%(count_")
        sql = (
            f"WITH scope AS MATERIALIZED (SELECT count(*) AS n FROM "  # noqa: S608
            f"(SELECT 1 FROM {table} WHERE {count_where} LIMIT %(cap)s) s) "
            f"SELECT scope.n, found.* FROM scope LEFT JOIN LATERAL "
            f"(SELECT {_COLUMNS}, embedding <=> %(query)s::vector AS distance FROM {table} "
            f"WHERE {where} AND scope.n <= %(exact_max)s "
            f"ORDER BY {_EXACT_ORDER} LIMIT %(limit)s) found ON true"
        )
        with connection.cursor() as cursor:
            cursor.execute(
                sql,
                {
                    **params,
                    **{f"count_{key}": value for key, value in count_params.items()},
                    "cap": exact_max + 1,
                    "exact_max": exact_max,
                },
            )
            rows = cursor.fetchall()
        scope_size = rows[0][0]
        if scope_size == 0:
            return [], "empty", 0
        if scope_size <= exact_max:
            return [row[1:] for row in rows if row[1] is not None], "exact", scope_size
        strategy = "hnsw"
    if strategy == "exact":
        sql = (
            f"SELECT {_COLUMNS}, embedding <=> %(query)s::vector AS distance FROM {table} "  # noqa: S608
            f"WHERE {where} ORDER BY {_EXACT_ORDER} LIMIT %(limit)s"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
    elif strategy in ("hnsw", "planner"):
        settings_sql = (
            "SELECT set_config('hnsw.iterative_scan', %(iterative_scan)s, true), "
            "set_config('hnsw.ef_search', %(ef_search)s, true)"
        )
        if strategy == "hnsw":
            # Sorting priced out: the ordered HNSW scan is the only plan left.
            settings_sql += ", set_config('enable_sort', 'off', true)"
        sql = (
            f"SELECT {_COLUMNS}, embedding <=> %(query)s::vector AS distance FROM {table} "  # noqa: S608
            f"WHERE {where} ORDER BY embedding <=> %(query)s::vector LIMIT %(limit)s"
        )
        params.update(iterative_scan=iterative_scan, ef_search=str(max(ef_search, limit)))
        if not connection.in_atomic_block:
            # One round trip: the statements of one query string run in one implicit
            # transaction, so the set_config()s hold while the search is planned and run,
            # and end with it.
            with connection.cursor() as cursor:
                cursor.execute(f"{settings_sql}; {sql}", params)
                cursor.nextset()
                rows = cursor.fetchall()
        else:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(settings_sql, params)
                cursor.execute(sql, params)
                rows = cursor.fetchall()
                # Read-only: rolling back (a savepoint) undoes the set_config()s, which
                # would otherwise last until the caller's transaction ends.
                transaction.set_rollback(True)
    else:
        raise ValueError(f"Unknown search strategy {strategy!r}.")
    return rows, strategy, scope_size


def _memory_from_row(row: Sequence[Any]) -> Memory:
    """A Memory (embedding deferred) from _COLUMNS and the distance, as the ORM would load it."""
    values = list(row[:-1])
    metadata = values[_METADATA_AT]
    values[_METADATA_AT] = json.loads(metadata) if isinstance(metadata, str) else metadata
    memory = Memory.from_db(connection.alias, _FIELD_NAMES, values)
    memory.distance = row[-1]
    return memory


def rerank_score(
    *, similarity: float, importance: float, last_used: datetime, now: datetime
) -> float:
    age_days = max(0.0, (now - last_used).total_seconds() / 86400)
    recency = math.pow(0.5, age_days / RECENCY_HALF_LIFE_DAYS)
    return (
        WEIGHT_SIMILARITY * similarity
        + WEIGHT_IMPORTANCE * max(0.0, min(1.0, importance))
        + WEIGHT_RECENCY * recency
    )


@dataclass(frozen=True)
class Ranking:
    """What `memory_rank` found: the memories to return, and how the search went."""

    recalled: list[RecalledMemory]
    strategy: str  # memory_search's, or "" when the query was empty (no search)
    scope_size: int
    candidates: int
    embedder: str


def memory_rank(
    *,
    agent_id: int,
    user_key: str,
    query: str,
    k: int = 5,
    now: datetime | None = None,
    also_user_key: str = "",
) -> Ranking:
    """The k memories most useful for `query` in this agent+user scope, best first. Reads only:
    `memory.services.memory_recall` records what a run recalled.

    Candidates are the 3k (at least 20) most similar unexpired, unpinned memories (pinned
    ones are always in context through `memory_pinned`); they are re-ranked by similarity,
    importance and recency (`rerank_score`).
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise MemoryInputError("k", f"k must be a whole number from 1 to {MAX_RECALL_K}.")
    k = min(k, MAX_RECALL_K)
    embedder = get_embedder()
    if not isinstance(query, str) or not query.strip():
        return Ranking([], "", 0, 0, embedder.name)
    now = now or timezone.now()
    vector = embedder.embed([query.strip()[:4000]])[0]
    rows, strategy, scope_size = _search_rows(
        agent_id=agent_id,
        embedding=vector,
        limit=max(3 * k, 20),
        user_keys=_scope_user_keys(user_key, also_user_key),
        kinds=None,
        pinned=False,
        now=now,
        embedder_name=embedder.name,
        strategy="auto",
        iterative_scan=HNSW_ITERATIVE_SCAN,
        ef_search=HNSW_EF_SEARCH,
    )
    # Ranked on the rows; only the k returned become Memory objects.
    scored = sorted(
        (
            (
                rerank_score(
                    similarity=1.0 - float(row[-1]),
                    importance=row[_IMPORTANCE_AT],
                    last_used=row[_LAST_ACCESSED_AT] or row[_CREATED_AT],
                    now=now,
                ),
                row,
            )
            for row in rows
        ),
        key=lambda pair: (-pair[0], pair[1][-1]),  # ties: the nearer first
    )
    recalled = []
    for score, row in scored[:k]:
        memory = _memory_from_row(row)
        memory.similarity = 1.0 - float(memory.distance)
        recalled.append(
            RecalledMemory(
                memory=memory,
                id=memory.id,
                text=memory.text,
                kind=memory.kind,
                score=round(score, 4),
                similarity=round(memory.similarity, 4),
            )
        )
    return Ranking(recalled, strategy, scope_size, len(rows), embedder.name)


def _scope_q(*, agent_id: int, user_key: str, also_user_key: str = "") -> Q:
    return Q(agent_id=agent_id, user_key__in=_scope_user_keys(user_key, also_user_key))


def _unexpired_q(now: datetime) -> Q:
    return Q(expires_at__isnull=True) | Q(expires_at__gt=now)


def memory_pinned(*, agent_id: int, user_key: str, also_user_key: str = "") -> list[Memory]:
    """Pinned, unexpired memories in scope (always placed in context): the PINNED_LIMIT most
    important, newest first among equals."""
    return list(
        Memory.objects.filter(
            _scope_q(agent_id=agent_id, user_key=user_key, also_user_key=also_user_key),
            pinned=True,
        )
        .filter(_unexpired_q(timezone.now()))
        .defer("embedding")
        .order_by("-importance", "-created_at")[:PINNED_LIMIT]
    )


# -- memory pages -------------------------------------------------------------------------


def memory_agent_counts() -> dict[int, int]:
    return dict(
        Memory.objects.values("agent_id").annotate(n=Count("id")).values_list("agent_id", "n")
    )


def memory_browse(
    *,
    agent_id: int,
    query: str = "",
    kind: str = "",
    user_key: str | None = None,
    pinned: bool | None = None,
    limit: int = 50,
) -> QuerySet[Memory] | list[Memory]:
    """Memories of an agent for the pages. With `query`, the `limit` most similar (each with
    `.similarity`), expired ones included; without, a queryset newest first.
    `user_key=None` means all users, '' agent-wide only."""
    if query.strip():
        embedder = get_embedder()
        vector = embedder.embed([query.strip()[:4000]])[0]
        return memory_search(
            agent_id=agent_id,
            embedding=vector,
            limit=limit,
            user_keys=None if user_key is None else [user_key],
            kinds=[kind] if kind else None,
            pinned=pinned,
            embedder_name=embedder.name,
        ).memories
    rows = Memory.objects.filter(agent_id=agent_id).defer("embedding")
    if kind:
        rows = rows.filter(kind=kind)
    if user_key is not None:
        rows = rows.filter(user_key=user_key)
    if pinned is not None:
        rows = rows.filter(pinned=pinned)
    return rows.order_by("-created_at", "-id")


def memory_get(*, memory_id: int) -> Memory | None:
    return Memory.objects.defer("embedding").filter(pk=memory_id).first()


def memory_recalls(*, memory: Memory, limit: int = 50) -> list[MemoryRecall]:
    return list(memory.recalls.order_by("-created_at")[:limit])


def memory_revisions(*, memory: Memory) -> list[MemoryRevision]:
    return list(memory.revisions.select_related("edited_by").order_by("-created_at"))


def memory_events(
    *, agent_id: int | None = None, memory_ref: int | None = None, limit: int = 100
) -> list[MemoryEvent]:
    rows = MemoryEvent.objects.select_related("actor")
    if agent_id is not None:
        rows = rows.filter(agent_id=agent_id)
    if memory_ref is not None:
        rows = rows.filter(memory_ref=memory_ref)
    return list(rows.order_by("-created_at", "-id")[:limit])


def memory_unembedded_count(*, agent_id: int | None = None) -> int:
    """Memories recall cannot see yet: no vector, or one from another embedder."""
    rows = Memory.objects.filter(Q(embedding__isnull=True) | ~Q(embedder=get_embedder().name))
    if agent_id is not None:
        rows = rows.filter(agent_id=agent_id)
    return rows.count()


def memory_agents() -> list[MemoryAgent]:
    """Agents (from the registered directory), each with its `memory_count`, by slug."""
    directory = agent_directory()
    if directory is None:
        return []
    counts = memory_agent_counts()
    return [replace(agent, memory_count=counts.get(agent.pk, 0)) for agent in directory()]


def memory_agent(*, slug: str) -> MemoryAgent | None:
    directory = agent_directory()
    found = directory(slug=slug) if directory is not None else []
    return found[0] if found else None


def memory_agent_of(*, memory: Memory) -> MemoryAgent | None:
    directory = agent_directory()
    found = directory(pk=memory.agent_id) if directory is not None else []
    return found[0] if found else None
