"""Ingestion in real RQ workers: queued on commit, progress on the source, and a worker killed
with SIGKILL midway resumed by the sweep with every chunk written (and embedded) once."""

from __future__ import annotations

import os
import signal
from datetime import timedelta

import pytest

from knowledge.models import Chunk, KnowledgeBase, Source, SourceStatus
from knowledge.selectors import knowledge_search
from knowledge.services import source_add_file, sources_resume
from tests.kit import until
from tests.knowledge.docs import QUESTION, html_bytes


def test_an_upload_is_ingested_by_the_worker(transactional_db, worker):  # type: ignore[no-untyped-def]
    base = KnowledgeBase.objects.create(name="B", slug="b")
    source = source_add_file(base=base, filename="help.html", data=html_bytes())
    until(
        lambda: Source.objects.filter(pk=source.pk, status=SourceStatus.READY).exists(),
        seconds=60,
        message=lambda: worker.output()[-2000:],
    )
    source.refresh_from_db()
    assert source.progress["phase"] == "done"
    assert source.progress["chunks_done"] == source.chunk_count > 0
    assert "45 days" in knowledge_search(bases=[base.pk], query=QUESTION, k=1)[0].text


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"  # a zombie is dead all the same
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_a_killed_worker_is_resumed_and_every_chunk_is_written_once(transactional_db, workers):  # type: ignore[no-untyped-def]
    sections = 20_000
    text = "\n\n".join(
        f"# Part {i}\n\nItem {i} ships from shelf {i % 97}." for i in range(sections)
    )
    base = KnowledgeBase.objects.create(name="B", slug="b")
    first = workers.start(name="knowledge-1")
    source = source_add_file(base=base, filename="parts.md", data=text.encode())

    def horse() -> int | None:
        progress = Source.objects.get(pk=source.pk).progress
        return progress["pid"] if progress.get("chunks_done") else None

    pid = until(horse, seconds=120, every=0.02, message=lambda: first.output()[-2000:])
    os.kill(pid, signal.SIGKILL)  # the work horse, inside the ingestion
    until(lambda: not pid_alive(pid), seconds=10)
    before = Chunk.objects.filter(source=source).count()
    source.refresh_from_db()
    assert source.status == SourceStatus.INGESTING and 0 < before < sections
    assert not Chunk.objects.filter(source=source, live=True).exists()  # nothing half-ingested

    second = workers.start(name="knowledge-2")
    assert sources_resume(stale_after=timedelta(0)) == 1
    until(
        lambda: Source.objects.filter(pk=source.pk, status=SourceStatus.READY).exists(),
        seconds=180,
        message=lambda: second.output()[-2000:],
    )
    source.refresh_from_db()
    assert Chunk.objects.filter(source=source, live=True).count() == sections == source.chunk_count
    assert source.progress["chunks_reused"] >= before, source.progress
    assert source.progress["chunks_reused"] + source.progress["chunks_embedded"] == sections
