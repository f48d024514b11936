"""Scoped vector recall at 10k and 100k memories: latency, recall@10, index build, inserts.

Prints one JSON document. Runs on a database of its own (created and dropped here) on the
embedded Postgres of AGENTOPS_VAR_DIR (default var/bench), so nothing else is touched.

Data (synthetic, seeded): 256-d unit vectors around 400 topic centres; 100 agents, each
drawing on 20 topics. Agent 0 is a "knowledge base" agent holding 25% of all memories,
80% of them agent-wide (its scopes are large); the other 99 share the rest with Zipf-like
sizes, 30% agent-wide and the rest spread over one user per ~20 memories (small scopes).

Query sets: "typical" (a random agent, one of its users) and "large" (agent 0, one of its
users); each query is near one of the agent's topics. Ground truth is brute force in
numpy over the scope. Strategies, all through `memory.selectors.memory_search`:
  exact           sort the scope (btree on agent_id,user_key then distance)
  hnsw_plain      HNSW forced, iterative scan off, ef_search 40 (pgvector < 0.8: the pitfall)
  hnsw_relaxed    HNSW forced + iterative scan, relaxed order (re-sorted), the product's
                  ef_search (200), and _ef40, _ef100 variants
  hnsw_strict     HNSW forced + iterative scan, strict order
  auto            the product: count the scope (capped); exact up to
                  MEMORY_EXACT_SEARCH_MAX rows, else hnsw_relaxed
  planner         the HNSW-shaped query with iterative scan on, no count: Postgres picks
                  the btree+sort or the HNSW plan from its estimates
  partial         (large set) a partial HNSW index WHERE agent_id = 0, relaxed order
and `recall_e2e`: the product's `memory_recall` with text queries (embedding, search,
re-rank; its bookkeeping, the access counts and MemoryRecall rows, is written behind it by
the process's writer, and the time until it landed after the last call is reported), k=5,
outside any transaction as the worker calls it. `writes`: `memory_remember` one at a time
and `memory_remember_many` in batches of 50, into the table with its HNSW index.
`recall_and_remember` sums up the largest size against issue 23's targets. Django's DEBUG
(query logging) is off while timing, as in production.

Usage: python bench/recall.py [--sizes 10000,100000] [--queries 200] [--e2e-only]
(--e2e-only: only memory_recall and the write rates; 3-5 minutes at 100k on 2 loaded cores.)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))
os.environ.setdefault("AGENTOPS_VAR_DIR", str(PROJECT_DIR / "var" / "bench"))
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentops.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

DIM = 256
N_AGENTS = 100
N_TOPICS = 400
TOPICS_PER_AGENT = 20
BIG_AGENT_SHARE = 0.25
NOISE = 0.9  # distance of a memory from its topic centre, relative to the centre's length
BENCH_DB = "agentops_bench_recall"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(latencies, 50), 3),
        "p95_ms": round(percentile(latencies, 95), 3),
        "mean_ms": round(statistics.fmean(latencies), 3),
    }


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


class Dataset:
    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.centres = unit(rng.standard_normal((N_TOPICS, DIM)))
        self.agent_topics = np.array(
            [rng.choice(N_TOPICS, TOPICS_PER_AGENT, replace=False) for _ in range(N_AGENTS)]
        )
        weights = 1.0 / np.arange(1, N_AGENTS) ** 0.8
        small = np.floor(weights / weights.sum() * n * (1 - BIG_AGENT_SHARE)).astype(int)
        sizes = np.concatenate([[n - small.sum()], small])
        agents, users, vectors = [], [], []
        self.users_of: dict[int, list[str]] = {}
        for agent, size in enumerate(sizes):
            share_wide = 0.8 if agent == 0 else 0.3
            n_users = max(3, int(size * (1 - share_wide)) // 20)
            names = [f"u{agent}-{j}" for j in range(n_users)]
            self.users_of[agent] = names
            wide = rng.random(size) < share_wide
            picks = rng.integers(0, n_users, size)
            users.extend("" if w else names[p] for w, p in zip(wide, picks, strict=True))
            agents.extend([agent] * size)
            topics = self.agent_topics[agent][rng.integers(0, TOPICS_PER_AGENT, size)]
            noise = rng.standard_normal((size, DIM)).astype(np.float32) * (NOISE / np.sqrt(DIM))
            vectors.append(unit(self.centres[topics] + noise))
        self.agent = np.array(agents)
        self.user = np.array(users, dtype=object)
        self.vectors = np.concatenate(vectors)
        self.sizes = sizes
        self.ids = np.zeros(n, dtype=np.int64)

    def queries(
        self, rng: np.random.Generator, count: int, *, big: bool
    ) -> list[tuple[int, str, np.ndarray]]:
        out = []
        for _ in range(count):
            agent = 0 if big else int(rng.integers(0, N_AGENTS))
            user = str(rng.choice(self.users_of[agent]))
            topic = self.agent_topics[agent][rng.integers(0, TOPICS_PER_AGENT)]
            noise = rng.standard_normal(DIM).astype(np.float32) * (NOISE / np.sqrt(DIM))
            out.append((agent, user, unit(self.centres[topic] + noise)))
        return out

    def truth(self, agent: int, user: str, query: np.ndarray, k: int = 10) -> tuple[set[int], int]:
        mask = (self.agent == agent) & ((self.user == "") | (self.user == user))
        idx = np.nonzero(mask)[0]
        sims = self.vectors[idx] @ query
        top = idx[np.argsort(-sims)[:k]]
        return {int(self.ids[i]) for i in top}, len(idx)


def setup_database() -> tuple[str, str]:
    """Create the bench database; returns the admin URL and whether this script started the
    embedded servers (and so should stop them)."""
    from agentops.embedded import ensure_services, postgres_dir

    started_here = (
        not os.environ.get("DATABASE_URL") and not (postgres_dir() / "postmaster.pid").exists()
    )
    ensure_services()
    import psycopg

    admin_url = os.environ["DATABASE_URL"]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}"')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    parts = urlsplit(admin_url)
    os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path="/" + BENCH_DB))
    return admin_url, started_here


def drop_database(admin_url: str) -> None:
    from django.db import connections

    connections.close_all()
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')


def sql(statement: str, params: list | None = None) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)


HNSW_DDL = (
    "CREATE INDEX {name} ON memory_memory USING hnsw (embedding vector_cosine_ops) "
    "WITH (m = 16, ef_construction = 64){where}"
)


def load(data: Dataset, embedder_name: str) -> dict[str, float]:
    from memory.models import Memory
    from memory.text import content_hash

    sql("TRUNCATE memory_memory CASCADE")
    sql("DROP INDEX IF EXISTS memory_embedding_hnsw")
    n = len(data.agent)
    rows = [
        Memory(
            agent_id=int(data.agent[i]),
            user_key=data.user[i],
            text=f"synthetic memory {i}",
            content_hash=content_hash(f"synthetic memory {i}"),
            embedding=data.vectors[i],
            embedder=embedder_name,
        )
        for i in range(n)
    ]
    started = time.perf_counter()
    created = Memory.objects.bulk_create(rows, batch_size=2000)
    insert_s = time.perf_counter() - started
    data.ids[:] = [m.pk for m in created]

    sql("SET maintenance_work_mem = '512MB'")
    started = time.perf_counter()
    sql(HNSW_DDL.format(name="memory_embedding_hnsw", where=""))
    build_s = time.perf_counter() - started
    sql("VACUUM ANALYZE memory_memory")

    # Inserts into the live index (the product's steady state), then removed again.
    extra = [
        Memory(
            agent_id=int(data.agent[i]),
            user_key=data.user[i],
            text=f"extra memory {i}",
            content_hash=content_hash(f"extra memory {i}"),
            embedding=data.vectors[i],
            embedder="bench/extra",
        )
        for i in range(2000)
    ]
    started = time.perf_counter()
    Memory.objects.bulk_create(extra, batch_size=2000)
    live_s = time.perf_counter() - started
    Memory.objects.filter(embedder="bench/extra").delete()
    return {
        "bulk_insert_rows_per_s_without_index": round(n / insert_s),
        "index_build_s": round(build_s, 2),
        "bulk_insert_rows_per_s_with_index": round(2000 / live_s),
    }


def run_strategies(
    data: Dataset, queries, strategies: dict[str, dict], *, embedder_name: str
) -> dict:  # type: ignore[no-untyped-def]
    """Each query through every strategy, the order rotating per query so that no strategy
    always meets cold caches."""
    from memory.selectors import memory_search

    names = list(strategies)
    stats = {name: {"lat": [], "rec": [], "short": 0, "used": {}} for name in names}
    for i, (agent, user, vector) in enumerate(queries):
        truth, scope = data.truth(agent, user, vector)
        for name in names[i % len(names) :] + names[: i % len(names)]:
            started = time.perf_counter()
            result = memory_search(
                agent_id=agent,
                embedding=vector,
                limit=10,
                user_keys=["", user],
                embedder_name=embedder_name,
                **strategies[name],
            )
            elapsed = (time.perf_counter() - started) * 1000
            got = {m.pk for m in result.memories}
            entry = stats[name]
            entry["lat"].append(elapsed)
            entry["rec"].append(len(got & truth) / len(truth))
            entry["short"] += len(got) < min(10, scope)
            entry["used"][result.strategy] = entry["used"].get(result.strategy, 0) + 1
    return {
        name: {
            **summary(entry["lat"]),
            "recall_at_10": round(statistics.fmean(entry["rec"]), 4),
            "short_results": entry["short"],
            "used": entry["used"],
        }
        for name, entry in stats.items()
    }


STRATEGIES = {
    "auto": {},
    "exact": {"strategy": "exact"},
    "planner": {"strategy": "planner"},
    "hnsw_plain": {"strategy": "hnsw", "iterative_scan": "off", "ef_search": 40},
    "hnsw_relaxed": {"strategy": "hnsw"},
    "hnsw_relaxed_ef40": {"strategy": "hnsw", "ef_search": 40},
    "hnsw_relaxed_ef100": {"strategy": "hnsw", "ef_search": 100},
    "hnsw_strict": {"strategy": "hnsw", "iterative_scan": "strict_order"},
}


def scope_curve(data: Dataset, queries, embedder_name: str) -> list[dict]:  # type: ignore[no-untyped-def]
    """Exact vs relaxed HNSW latency by scope size: where the crossover lies."""
    from memory.selectors import memory_search

    buckets: dict[str, dict[str, list[float]]] = {}
    edges = [0, 100, 250, 500, 1000, 2000, 5000, 10000, 20000, 10**9]
    for agent, user, vector in queries:
        _, scope = data.truth(agent, user, vector)
        bucket = next(f"{lo}-{hi}" for lo, hi in itertools.pairwise(edges) if lo <= scope < hi)
        for strategy in ("exact", "hnsw"):
            started = time.perf_counter()
            memory_search(
                agent_id=agent,
                embedding=vector,
                limit=15,
                user_keys=["", user],
                embedder_name=embedder_name,
                strategy=strategy,
            )
            elapsed = (time.perf_counter() - started) * 1000
            buckets.setdefault(bucket, {"exact": [], "hnsw": []})[strategy].append(elapsed)
    return [
        {
            "scope_rows": name,
            "queries": len(v["exact"]),
            "exact_p50_ms": round(percentile(v["exact"], 50), 3),
            "hnsw_relaxed_p50_ms": round(percentile(v["hnsw"], 50), 3),
        }
        for name, v in sorted(buckets.items(), key=lambda kv: int(kv[0].split("-")[0]))
    ]


def search_only(entry: dict, data: Dataset, sets: dict, embedder_name: str) -> None:
    """The partial index, the scope curve and the search-only headline (`memory_search`)."""
    started = time.perf_counter()
    sql("SET maintenance_work_mem = '512MB'")
    sql(HNSW_DDL.format(name="bench_partial_agent0", where=" WHERE agent_id = 0"))
    entry["large"]["partial_index_build_s"] = round(time.perf_counter() - started, 2)
    sql("ANALYZE memory_memory")
    entry["large"]["partial"] = run_strategies(
        data, sets["large"], {"partial": {"strategy": "hnsw"}}, embedder_name=embedder_name
    )["partial"]
    sql("DROP INDEX bench_partial_agent0")
    entry["scope_curve"] = scope_curve(
        data, sets["typical"][:100] + sets["large"][:50], embedder_name
    )
    entry["headline"] = {
        f"{set_name}_{key}": entry[set_name]["auto"][key]
        for set_name in ("typical", "large")
        for key in ("p50_ms", "p95_ms", "recall_at_10")
    }


RECALL_TEXTS = [
    "what does the user prefer for delivery",
    "billing address and invoices",
    "favourite food",
    "opening hours of the shop",
    "the last order that was shipped",
]


def recall_e2e(data: Dataset, queries) -> dict:  # type: ignore[no-untyped-def]
    """The product's `memory_recall` as the worker calls it (no transaction around it): its
    bookkeeping is written behind it, so the time until that landed is measured after the
    last call (`memory_recall_flush`)."""
    from memory import services

    latencies = []
    for i, (agent, user, _) in enumerate(queries):
        started = time.perf_counter()
        services.memory_recall(
            agent_id=agent,
            user_key=user,
            query=RECALL_TEXTS[i % len(RECALL_TEXTS)],
            k=5,
            run_id=uuid.uuid4(),
        )
        latencies.append((time.perf_counter() - started) * 1000)
    flush = getattr(services, "memory_recall_flush", None)
    if flush is None:  # before issue 23 the bookkeeping was written inside the call
        return summary(latencies)
    started = time.perf_counter()
    landed = flush()
    return {
        **summary(latencies),
        "bookkeeping_landed_after_last_ms": round((time.perf_counter() - started) * 1000, 3),
        "bookkeeping_landed": landed,
    }


def _remember_text(i: int) -> str:
    return f"Customer {i} asked about order {i * 7} and prefers delivery on day {i % 28}"


def remember_throughput(count: int = 300, batch: int = 50, batches: int = 20) -> dict:
    """`memory_remember` one at a time, then `memory_remember_many` in batches (each a
    scope of its own, as a run writes them), every text new; into the 100k table with its
    HNSW index."""
    from memory.services import memory_remember

    started = time.perf_counter()
    for i in range(count):
        memory_remember(
            agent_id=10_000 + i % 10,
            user_key=f"writer-{i % 7}",
            text=_remember_text(i),
            source_run_id=uuid.uuid4(),
            source_step=1,
        )
    elapsed = time.perf_counter() - started
    report: dict = {
        "memory_remember_per_s": round(count / elapsed),
        "memory_remember_mean_ms": round(elapsed / count * 1000, 3),
    }
    try:
        from memory.services import MemoryDraft, memory_remember_many
    except ImportError:  # before issue 23
        return report
    latencies = []
    for b in range(batches):
        drafts = [MemoryDraft(_remember_text(100_000 + b * batch + j)) for j in range(batch)]
        started = time.perf_counter()
        memory_remember_many(
            agent_id=20_000 + b % 10,
            user_key=f"writer-{b % 7}",
            drafts=drafts,
            source_run_id=uuid.uuid4(),
            source_step=1,
        )
        latencies.append(time.perf_counter() - started)
    report.update(
        {
            "memory_remember_many_batch": batch,
            "memory_remember_many_per_s": round(batch * batches / sum(latencies)),
            "memory_remember_many_batch_p50_ms": round(percentile(latencies, 50) * 1000, 3),
        }
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--e2e-only",
        action="store_true",
        help="only memory_recall and the write rates (skip the search strategies)",
    )
    args = parser.parse_args()

    admin_url, started_here = setup_database()
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    # Timed as in production: DEBUG (set for the embedded services) would log every query.
    settings.DEBUG = False
    from memory.embedders import get_embedder
    from memory.selectors import HNSW_EF_SEARCH

    embedder_name = get_embedder().name
    report: dict = {
        "bench": "recall",
        "machine": {"cpus": os.cpu_count()},
        "settings": {
            "MEMORY_EXACT_SEARCH_MAX": settings.MEMORY_EXACT_SEARCH_MAX,
            "hnsw": {"m": 16, "ef_construction": 64, "ef_search": HNSW_EF_SEARCH},
        },
        "targets": {"p95_ms_at_100k": 10, "recall_at_10": 0.95},
        "sizes": {},
    }
    try:
        for n in [int(s) for s in args.sizes.split(",")]:
            rng = np.random.default_rng(42)
            data = Dataset(n, rng)
            entry: dict = {
                "agents": N_AGENTS,
                "users": sum(len(u) for u in data.users_of.values()),
                "largest_agent_rows": int(data.sizes[0]),
                "median_agent_rows": int(np.median(data.sizes[1:])),
            }
            entry.update(load(data, embedder_name))
            sets = {
                "typical": data.queries(rng, args.queries, big=False),
                "large": data.queries(rng, args.queries, big=True),
            }
            for set_name, queries in sets.items():
                scopes = [data.truth(a, u, v)[1] for a, u, v in queries]
                entry[set_name] = {"scope_rows_p50": int(np.median(scopes))}
                if not args.e2e_only:
                    entry[set_name].update(
                        run_strategies(data, queries, STRATEGIES, embedder_name=embedder_name)
                    )
            if not args.e2e_only:
                search_only(entry, data, sets, embedder_name)
            entry["recall_e2e_typical"] = recall_e2e(data, sets["typical"])
            entry["recall_e2e_large"] = recall_e2e(data, sets["large"])
            report["sizes"][str(n)] = entry
            print(f"done {n}", file=sys.stderr)
        report["writes"] = remember_throughput()
        biggest_n = max(int(k) for k in report["sizes"])
        biggest = report["sizes"][str(biggest_n)]
        report["recall_and_remember"] = {
            "memories": biggest_n,
            "memory_recall_typical_p50_ms": biggest["recall_e2e_typical"]["p50_ms"],
            "memory_recall_typical_p95_ms": biggest["recall_e2e_typical"]["p95_ms"],
            "memory_recall_largest_p50_ms": biggest["recall_e2e_large"]["p50_ms"],
            "memory_recall_largest_p95_ms": biggest["recall_e2e_large"]["p95_ms"],
            "memory_remember_per_s": report["writes"]["memory_remember_per_s"],
            "memory_remember_many_per_s": report["writes"].get("memory_remember_many_per_s"),
            "targets": {
                "memory_recall_typical_p95_ms": 3.9,
                "memory_recall_largest_p95_ms": 8,
                "memory_remember_many_per_s": 800,
            },
        }
        figures = report["recall_and_remember"]
        report["recall_and_remember"]["targets_met"] = (
            figures["memory_recall_typical_p95_ms"] <= 3.9
            and figures["memory_recall_largest_p95_ms"] <= 8
            and (figures["memory_remember_many_per_s"] or 0) >= 800
        )
        if "headline" in biggest:
            headline = biggest["headline"]
            report["targets_met"] = all(
                headline[f"{set_name}_p95_ms"] < 10 and headline[f"{set_name}_recall_at_10"] >= 0.95
                for set_name in ("typical", "large")
            )
    finally:
        drop_database(admin_url)
        if started_here:
            from agentops.embedded import stop_services

            stop_services()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
