"""Reading knowledge: bases, sources, chunks, and hybrid retrieval.

`knowledge_search` runs two searches over the live chunks in scope (bases, optional
sources, visibility, metadata): pgvector's HNSW index for the nearest vectors and Postgres
full-text search (the generated `search` column, its GIN index; the question's words OR-ed,
so a question need not hold every word), each its top `candidates`, and fuses their ranks by
reciprocal rank fusion (score = Σ 1 / (RRF_K + rank)). Each hit carries both methods' ranks
and scores and the fused rank, for the retrieval test page and the run's span.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet

from knowledge.models import SEARCH_CONFIG, Chunk, KnowledgeBase, Source, Visibility
from memory.embedders import Embedder, get_embedder, vector_text

RRF_K = 60
COMMON_TERM_SHARE = 0.2
COMMON_TERMS_TTL = 300.0  # seconds
MAX_QUERY_TERMS = 8
CANDIDATES = 40
HNSW_EF_SEARCH = 200  # as memory: recall@10 0.95 on the benchmark's near-alike chunks (0.87 at 100)
METHODS = ("vector", "text")


def knowledge_bases_all() -> QuerySet[KnowledgeBase]:
    return KnowledgeBase.objects.all()


def sources_of(*, base: KnowledgeBase) -> QuerySet[Source]:
    return Source.objects.filter(base=base).defer("data").select_related("added_by")


def chunks_of(*, source: Source, live_only: bool = True) -> QuerySet[Chunk]:
    """The chunk browser: a source's chunks in reading order."""
    chunks = Chunk.objects.filter(source=source).defer("embedding")
    if live_only:
        chunks = chunks.filter(live=True)
    return chunks.order_by("ordinal", "id")


def visibilities_for(visibility: str) -> list[str]:
    """The chunk visibilities an audience may see: end users see only theirs, operators all."""
    if visibility == Visibility.OPERATORS:
        return [Visibility.END_USERS, Visibility.OPERATORS]
    return [Visibility.END_USERS]


@dataclass
class KnowledgeHit:
    chunk_id: int
    source_id: int
    base_id: int
    source_title: str
    source_url: str
    heading_path: str
    text: str
    ordinal: int
    metadata: dict[str, Any]
    fused_rank: int
    fused_score: float
    vector_rank: int | None = None
    vector_score: float | None = None  # cosine similarity
    text_rank: int | None = None
    text_score: float | None = None  # ts_rank_cd

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Ranked:
    ranks: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)


def _scope_sql(
    *,
    bases: Sequence[int],
    visibility: str,
    sources: Sequence[int] | None,
    metadata: dict[str, Any] | None,
) -> tuple[str, dict[str, Any]]:
    where = ["live", "base_id = ANY(%(bases)s)", "visibility = ANY(%(visibilities)s)"]
    params: dict[str, Any] = {
        "bases": list(bases),
        "visibilities": visibilities_for(visibility),
    }
    if sources is not None:
        where.append("source_id = ANY(%(sources)s)")
        params["sources"] = list(sources)
    if metadata:
        where.append("metadata @> %(metadata)s::jsonb")
        params["metadata"] = json.dumps(metadata)
    return " AND ".join(where), params


def _lexeme(word: str) -> str:
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


_common: tuple[float, dict[str, float]] = (0.0, {})


def _common_terms(cursor: Any) -> dict[str, float]:
    """The most common words of the chunks and the share of chunks holding each: Postgres's
    own statistics of the `search` column (ANALYZE), read at most every COMMON_TERMS_TTL."""
    global _common
    read_at, terms = _common
    if time.monotonic() - read_at < COMMON_TERMS_TTL:
        return terms
    cursor.execute(
        "SELECT e, f FROM pg_stats, unnest(most_common_elems::text::text[],"
        " most_common_elem_freqs) AS u(e, f) WHERE schemaname = current_schema()"
        " AND tablename = 'knowledge_chunk' AND attname = 'search' AND e IS NOT NULL"
    )
    terms = {word: float(share) for word, share in cursor.fetchall()}
    _common = (time.monotonic(), terms)
    return terms


def _text_search(
    cursor: Any, query: str, scope: str, params: dict[str, Any]
) -> list[tuple[int, float]]:
    """Full-text candidates, best first. A question's words are OR-ed (it need not hold every
    word), but ranking every chunk that holds one common word would read most of the table:
    words in more than COMMON_TERM_SHARE of the chunks (and words no chunk holds) only weigh
    in the rank; the others are asked for narrowest first (all of them, then any two, then
    any one) until a chunk is found. Words next to each other in the question and in
    a chunk add to its rank."""
    cursor.execute(
        f"SELECT lexeme, positions FROM unnest(to_tsvector('{SEARCH_CONFIG}', %s))",  # noqa: S608
        [query],
    )
    placed = sorted(
        (position, word) for word, positions in cursor.fetchall() for position in positions
    )
    words = list(dict.fromkeys(word for _, word in placed))
    if not words:
        return []
    phrases = " | ".join(
        f"({_lexeme(a)} <{q - p}> {_lexeme(b)})"
        for (p, a), (q, b) in itertools.pairwise(placed)
        if a != b and q - p <= 3
    )
    common = _common_terms(cursor)
    rarest_first = sorted(words, key=lambda w: common.get(w, 0.0))
    cursor.execute(
        "SELECT w FROM unnest(%s::text[]) AS w WHERE EXISTS"
        " (SELECT 1 FROM knowledge_chunk WHERE search @@ CAST(w AS tsquery))",
        [[_lexeme(w) for w in rarest_first if common.get(w, 0.0) <= COMMON_TERM_SHARE]],
    )
    present = {row[0] for row in cursor.fetchall()}
    distinctive = [w for w in rarest_first if _lexeme(w) in present][:MAX_QUERY_TERMS]
    distinctive = distinctive or rarest_first[:2]
    scored = " | ".join(_lexeme(w) for w in words)
    # Narrowest first: every distinctive word, then any two of them, then any one.
    filters = [" | ".join(_lexeme(w) for w in distinctive)]
    if len(distinctive) >= 3:
        pairs = itertools.combinations(distinctive, 2)
        filters.insert(0, " | ".join(f"({_lexeme(a)} & {_lexeme(b)})" for a, b in pairs))
    if len(distinctive) >= 2:
        filters.insert(0, " & ".join(_lexeme(w) for w in distinctive))
    found: list[tuple[int, float]] = []
    for matched in filters:
        cursor.execute(
            "SELECT id, ts_rank_cd(search, CAST(%(scored)s AS tsquery))"  # noqa: S608
            + (" + ts_rank_cd(search, CAST(%(phrases)s AS tsquery))" if phrases else "")
            + " AS score"
            f" FROM knowledge_chunk WHERE search @@ CAST(%(matched)s AS tsquery) AND {scope}"
            " ORDER BY score DESC, id LIMIT %(n)s",
            {**params, "scored": scored, "matched": matched, "phrases": phrases},
        )
        found = [(chunk_id, float(score)) for chunk_id, score in cursor.fetchall()]
        if found:  # the narrowest match that finds anything: the vector part adds the rest
            break
    return found


def knowledge_search(
    *,
    bases: Sequence[int],
    query: str,
    k: int = 5,
    sources: Sequence[int] | None = None,
    visibility: str = Visibility.END_USERS,
    metadata: dict[str, Any] | None = None,
    methods: Sequence[str] = METHODS,
    candidates: int = CANDIDATES,
    embedder: Embedder | None = None,
) -> list[KnowledgeHit]:
    """The `k` best live chunks for `query` in the given bases (ids), fused from the methods
    asked for ("vector", "text"). `visibility` is the audience: END_USERS sees only sources
    visible to end users, OPERATORS sees every source. `metadata` keeps the chunks whose
    metadata holds every given key and value (a source's own metadata included)."""
    query = query.strip()
    if not bases or not query or k <= 0:
        return []
    scope, params = _scope_sql(
        bases=bases, visibility=visibility, sources=sources, metadata=metadata
    )
    params = {**params, "n": max(candidates, k)}
    ranked: dict[int, _Ranked] = {}
    with transaction.atomic(), connection.cursor() as cursor:
        if "vector" in methods:
            embedding = (embedder or get_embedder()).embed([query])[0]
            cursor.execute(f"SET LOCAL hnsw.ef_search = {int(max(HNSW_EF_SEARCH, candidates))}")
            cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            cursor.execute(
                "SELECT id, distance FROM (SELECT id, embedding <=> %(query)s::vector AS distance"  # noqa: S608
                f" FROM knowledge_chunk WHERE {scope} ORDER BY embedding <=> %(query)s::vector"
                " LIMIT %(n)s) nearest ORDER BY distance, id",
                {**params, "query": vector_text(embedding)},
            )
            for rank, (chunk_id, distance) in enumerate(cursor.fetchall(), 1):
                hit = ranked.setdefault(chunk_id, _Ranked())
                hit.ranks["vector"] = rank
                hit.scores["vector"] = 1.0 - float(distance)
        if "text" in methods:
            for rank, (chunk_id, score) in enumerate(_text_search(cursor, query, scope, params), 1):
                hit = ranked.setdefault(chunk_id, _Ranked())
                hit.ranks["text"] = rank
                hit.scores["text"] = float(score)
    fused = sorted(
        (
            (sum(1.0 / (RRF_K + r) for r in hit.ranks.values()), chunk_id)
            for chunk_id, hit in ranked.items()
        ),
        key=lambda pair: (-pair[0], min(ranked[pair[1]].ranks.values()), pair[1]),
    )[:k]
    rows = {
        chunk.pk: chunk
        for chunk in Chunk.objects.filter(pk__in=[chunk_id for _, chunk_id in fused])
        .select_related("source")
        .only(
            "id",
            "source_id",
            "base_id",
            "heading_path",
            "text",
            "ordinal",
            "metadata",
            "source__title",
            "source__url",
            "source__filename",
        )
    }
    hits = []
    for position, (score, chunk_id) in enumerate(fused, 1):
        chunk = rows.get(chunk_id)
        if chunk is None:  # deleted between the search and now
            continue
        found = ranked[chunk_id]
        hits.append(
            KnowledgeHit(
                chunk_id=chunk_id,
                source_id=chunk.source_id,
                base_id=chunk.base_id,
                source_title=chunk.source.title or chunk.source.filename or chunk.source.url,
                source_url=chunk.metadata.get("url") or chunk.source.url,
                heading_path=chunk.heading_path,
                text=chunk.text,
                ordinal=chunk.ordinal,
                metadata=chunk.metadata,
                fused_rank=position,
                fused_score=score,
                vector_rank=found.ranks.get("vector"),
                vector_score=found.scores.get("vector"),
                text_rank=found.ranks.get("text"),
                text_score=found.scores.get("text"),
            )
        )
    return hits
