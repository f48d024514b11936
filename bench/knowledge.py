"""Knowledge bases (issue 25): ingestion rate, hybrid query latency, vector recall, and the
hybrid against vector-only and full-text-only retrieval.

Prints one JSON document. Runs on the embedded services of AGENTOPS_VAR_DIR (default
var/bench), in the bench database; its knowledge bases are deleted before and after.

- `ingestion`: a plain-text file of `--ingest-paragraphs` paragraphs (about 110 words each,
  chunks of 300 tokens) through the product's ingestion (`source_ingest`, the RQ job's body)
  with the configured embedder (wordllama offline by default): chunks/s, the progress
  updates seen, and the unchanged re-ingest (no embedding call).
- `corpus`: `--chunks` chunks of synthetic product facts (one paragraph, one chunk), ingested
  the same way in sources of 10,000. Among them `--queries` target facts, each the only
  chunk naming its product ("The crimson otter lamp is assembled in Oslo, ...").
- `query`: `knowledge_search` (the product's hybrid: HNSW + full text, RRF), k=5, per question
  ("In which city is the crimson otter lamp assembled?"): p50/p95 ms; and each method alone.
- `recall_at_10`: the vector part (HNSW, iterative scan, the product's ef_search) against an
  exact scan.
- `top5_hit_rate`: the share of questions whose target chunk is in the top 5, per method.

Usage: python bench/knowledge.py [--chunks 20000] [--queries 200] [--ingest-paragraphs 6000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._setup import django_setup, percentile

COLOURS = [
    "crimson",
    "amber",
    "violet",
    "teal",
    "ochre",
    "ivory",
    "cobalt",
    "scarlet",
    "olive",
    "silver",
    "golden",
    "copper",
    "maroon",
    "indigo",
    "coral",
    "jade",
    "lilac",
    "rust",
    "azure",
    "beige",
]
ANIMALS = [
    "otter",
    "falcon",
    "badger",
    "heron",
    "lynx",
    "walrus",
    "beaver",
    "raven",
    "marten",
    "bison",
    "gecko",
    "ibis",
    "jackal",
    "koala",
    "lemur",
    "moose",
    "newt",
    "osprey",
    "panda",
    "quail",
]
OBJECTS = [
    "lamp",
    "kettle",
    "toaster",
    "blender",
    "clock",
    "heater",
    "mixer",
    "speaker",
    "fan",
    "radio",
    "drill",
    "stove",
    "grill",
    "camera",
    "printer",
    "scanner",
    "router",
    "monitor",
    "keyboard",
    "kettlebell",
]
CITIES = [
    "Oslo",
    "Lisbon",
    "Dublin",
    "Krakow",
    "Tallinn",
    "Porto",
    "Lyon",
    "Turin",
    "Ghent",
    "Bergen",
    "Aarhus",
    "Leeds",
    "Bilbao",
    "Graz",
    "Brno",
    "Malmo",
    "Cork",
    "Split",
    "Riga",
    "Basel",
]
NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"]
FILLER = [
    "It comes in a recycled cardboard box with a printed manual and a spare fuse.",
    "Customers mention that the finish resists scratches.",
    "The switch feels solid in daily use.",
    "Cleaning takes a damp cloth and a little soap, never a scouring pad.",
    "A two-pin plug adapter is sold separately.",
    "Spare parts stay in stock for at least five years after the last sale.",
    "The cable is one metre long and braided.",
    "Reviewers praise how quiet it runs at night.",
    "The matte finish hides fingerprints well.",
    "It was redesigned last spring with a lighter frame.",
    "Most buyers pair it with the matching wall bracket.",
    "A firmware update adds a timer and a child lock.",
    "The manual is printed in nine languages.",
    "It ships flat-packed and takes ten minutes to assemble.",
    "The battery lasts about a week between charges.",
    "Schools and offices order it in bulk every autumn.",
    "The handle stays cool even after an hour of use.",
    "It won a design award for its simple controls.",
    "Colours fade slightly if it stands in direct sunlight.",
    "The feet are rubber, so it does not slide on tiles.",
    "A carry bag is included with the deluxe edition.",
    "Its packaging contains no plastic at all.",
    "The warning light blinks amber when it needs descaling.",
    "Replacement filters cost little and last three months.",
]


def fact(name: str, rng: random.Random) -> str:
    return (
        f"The {name} is assembled in {rng.choice(CITIES)}, and its warranty lasts "
        f"{rng.choice(NUMBERS)} years. It weighs {rng.randint(2, 40)} hundred grams. "
        + " ".join(rng.sample(FILLER, 3))
    )


def question(name: str) -> str:
    return f"In which city is the {name} assembled?"


def timed(call: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call()
    return (time.perf_counter() - start) * 1000, result


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "mean_ms": round(statistics.fmean(latencies), 2),
    }


def bench_ingestion(paragraphs: int) -> dict[str, Any]:
    from knowledge.chunking import count_tokens
    from knowledge.services import knowledge_base_create, source_add_file, source_ingest
    from memory.embedders import get_embedder

    rng = random.Random(7)
    words = " ".join(FILLER + COLOURS + ANIMALS + OBJECTS + CITIES).lower().split()
    text = "\n\n".join(
        " ".join(rng.choice(words) for _ in range(110)).capitalize() + "."
        for _ in range(paragraphs)
    )
    get_embedder().embed(["warm up"])
    count_tokens("warm up")
    base = knowledge_base_create(name="bench-ingest", chunk_tokens=300, chunk_overlap=40)
    source = source_add_file(base=base, filename="plain.txt", data=text.encode())
    batches: list[float] = []
    start = time.perf_counter()
    result = source_ingest(
        source_id=source.pk, on_batch=lambda n: batches.append(time.perf_counter())
    )
    seconds = time.perf_counter() - start
    again_ms, again = timed(lambda: source_ingest(source_id=source.pk))
    return {
        "bytes": len(text),
        "chunks": result.chunks,
        "seconds": round(seconds, 2),
        "chunks_per_second": round(result.chunks / seconds, 1),
        "progress_updates": len(batches),
        "longest_gap_between_progress_updates_s": round(
            max(b - a for a, b in zip([start, *batches], batches, strict=False)), 3
        )
        if batches
        else None,
        "unchanged_reingest_ms": round(again_ms, 1),
        "unchanged_reingest_embedded": again.embedded,
    }


def build_corpus(chunks: int, queries: int) -> tuple[int, list[tuple[str, int]], float]:
    """The corpus base's id, the (question, target chunk id) pairs, and chunks/s."""
    from django.test.utils import override_settings

    from knowledge.models import Chunk
    from knowledge.services import knowledge_base_create, source_add_file, source_ingest

    rng = random.Random(11)
    names = [f"{c} {a} {o}" for c in COLOURS for a in ANIMALS for o in OBJECTS]
    rng.shuffle(names)
    targets, others = names[:queries], names[queries:]
    paragraphs = [fact(name, rng) for name in targets]
    paragraphs += [fact(rng.choice(others), rng) for _ in range(chunks - queries)]
    rng.shuffle(paragraphs)
    base = knowledge_base_create(name="bench-corpus", chunk_tokens=100, chunk_overlap=0)
    start = time.perf_counter()
    with override_settings(KNOWLEDGE_UPLOAD_MAX_BYTES=200 * 1024 * 1024):
        for part in range(0, len(paragraphs), 10_000):
            text = "\n\n".join(paragraphs[part : part + 10_000])
            source = source_add_file(base=base, filename=f"facts-{part}.txt", data=text.encode())
            source_ingest(source_id=source.pk)
    rate = len(paragraphs) / (time.perf_counter() - start)
    pairs = []
    for name in targets:
        chunk = Chunk.objects.filter(base=base, text__contains=f"The {name} is").first()
        assert chunk is not None, name
        pairs.append((question(name), chunk.pk))
    return base.pk, pairs, rate


def bench_queries(base_id: int, pairs: list[tuple[str, int]]) -> dict[str, Any]:
    from django.db import connection, transaction

    from knowledge.selectors import HNSW_EF_SEARCH, knowledge_search
    from memory.embedders import get_embedder, vector_text

    with connection.cursor() as cursor:
        # Deleted rows (an earlier run's) left in the HNSW and GIN indexes slow the scans and
        # cost the HNSW scan its recall: measure the table as autovacuum keeps it.
        cursor.execute("VACUUM ANALYZE knowledge_chunk")
    methods = {"hybrid": ("vector", "text"), "vector": ("vector",), "text": ("text",)}
    latencies: dict[str, list[float]] = {m: [] for m in methods}
    hits: dict[str, int] = dict.fromkeys(methods, 0)
    for round_ in range(2):  # the first round warms the caches; the second is measured
        for query, target in pairs:
            for name, used in methods.items():
                ms, found = timed(
                    lambda q=query, u=used: knowledge_search(
                        bases=[base_id], query=q, k=5, methods=u
                    )
                )
                if round_:
                    latencies[name].append(ms)
                    hits[name] += target in [h.chunk_id for h in found]
    embedder = get_embedder()
    recalls = []
    for query, _ in pairs:
        vector = vector_text(embedder.embed([query])[0])
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL hnsw.ef_search = {HNSW_EF_SEARCH}")
            cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            cursor.execute(  # as knowledge_search asks: 40 candidates, the first 10
                "SELECT id FROM (SELECT id, embedding <=> %s::vector AS distance"
                " FROM knowledge_chunk WHERE live AND base_id = %s"
                " ORDER BY embedding <=> %s::vector LIMIT 40) nearest ORDER BY distance LIMIT 10",
                [vector, base_id, vector],
            )
            approximate = {row[0] for row in cursor.fetchall()}
            cursor.execute(
                "SELECT id FROM knowledge_chunk WHERE live AND base_id = %s"
                " ORDER BY (embedding <=> %s::vector) + 0 LIMIT 10",
                [base_id, vector],
            )
            exact = {row[0] for row in cursor.fetchall()}
        recalls.append(len(approximate & exact) / max(len(exact), 1))
    return {
        "latency": {name: summary(values) for name, values in latencies.items()},
        "recall_at_10_vector_vs_exact": round(statistics.fmean(recalls), 4),
        "top5_hit_rate": {name: round(hits[name] / len(pairs), 3) for name in methods},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ingest-paragraphs", type=int, default=6_000)
    parser.add_argument("--keep", action="store_true", help="keep the corpus (to explore it)")
    args = parser.parse_args()
    django_setup()
    from django.conf import settings
    from django.db import connection

    from knowledge.models import KnowledgeBase
    from knowledge.services import knowledge_base_delete

    settings.DEBUG = False  # no query log while timing

    def clean() -> None:
        for base in KnowledgeBase.objects.filter(slug__startswith="bench-"):
            knowledge_base_delete(base=base)

    clean()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM knowledge_chunk")  # what an earlier run left, while it is small
    try:
        ingestion = bench_ingestion(args.ingest_paragraphs)
        base_id, pairs, corpus_rate = build_corpus(args.chunks, args.queries)
        queries = bench_queries(base_id, pairs)
    finally:
        if not args.keep:
            clean()
    print(
        json.dumps(
            {
                "embedder": settings.MEMORY_EMBEDDER,
                "load_average": os.getloadavg(),
                "ingestion": ingestion,
                "corpus": {
                    "chunks": args.chunks,
                    "ingest_chunks_per_second": round(corpus_rate, 1),
                },
                "queries": args.queries,
                **queries,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
