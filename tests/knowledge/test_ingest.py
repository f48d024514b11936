"""Ingestion and retrieval on real Postgres/pgvector with the real offline embedder."""

from __future__ import annotations

import pytest

from knowledge.models import Chunk, KnowledgeBase, Source, SourceStatus, Visibility
from knowledge.selectors import chunks_of, knowledge_search
from knowledge.services import (
    knowledge_base_delete,
    source_add_file,
    source_delete,
    source_ingest,
    source_reindex,
    source_update,
)
from tests.knowledge.conftest import CountingEmbedder
from tests.knowledge.docs import ANSWER, MAKERS, OTHER_SECTIONS, QUESTION, markdown_bytes


def ingest(source: Source, embedder: CountingEmbedder | None = None) -> Source:
    source_ingest(source_id=source.pk, embedder=embedder)
    source.refresh_from_db()
    return source


@pytest.mark.parametrize("filename", sorted(MAKERS))
def test_the_answer_paragraph_is_the_top_hit_in_a_pdf_docx_and_html(base, filename):
    source = source_add_file(base=base, filename=filename, data=MAKERS[filename]())
    source = ingest(source)
    assert source.status == SourceStatus.READY, source.last_error
    chunks = list(chunks_of(source=source))
    assert source.chunk_count == len(chunks) >= 2
    texts = "\n".join(c.text for c in chunks)
    assert "| Toaster | 2 years |" in texts  # the table, whole, as rows
    assert "Home" not in texts and "Copyright" not in texts  # html: the main text only

    hits = knowledge_search(bases=[base.pk], query=QUESTION, k=3)
    assert hits, "no hit"
    top = hits[0]
    assert "45 days" in top.text and "Returns" in top.heading_path
    assert top.fused_rank == 1 and top.source_id == source.pk
    assert top.vector_rank is not None and top.text_rank is not None
    if filename.endswith(".pdf"):
        assert top.metadata["page"] == 1


def test_reingesting_an_unchanged_source_embeds_nothing(base, counting):
    source = source_add_file(base=base, filename="help.html", data=MAKERS["help.html"]())
    ingest(source, counting)
    first = counting.calls
    assert first >= 1
    ids = set(Chunk.objects.filter(source=source).values_list("id", flat=True))

    source_reindex(source=source)
    assert ingest(source, counting).status == SourceStatus.READY
    assert counting.calls == first  # unchanged content: not even parsed again

    source_reindex(source=source, force=True)  # parsed and chunked again: vectors reused
    assert ingest(source, counting).status == SourceStatus.READY
    assert counting.calls == first
    assert set(Chunk.objects.filter(source=source).values_list("id", flat=True)) == ids
    assert source.progress["chunks_reused"] == len(ids)


def test_a_changed_section_replaces_only_its_chunks(base, counting):
    sections = [*OTHER_SECTIONS, ("Returns", ANSWER)]
    source = source_add_file(base=base, filename="faq.md", data=markdown_bytes(sections))
    ingest(source, counting)
    before = {c.heading_path: (c.pk, c.text) for c in chunks_of(source=source)}
    assert set(before) == {title for title, _ in sections}
    counting.texts.clear()

    changed = [*sections[:3], ("Returns", ANSWER.replace("45 days", "60 days"))]
    Source.objects.filter(pk=source.pk).update(data=markdown_bytes(changed))
    source_reindex(source=source)
    ingest(source, counting)

    assert len(counting.texts) == 1 and "60 days" in counting.texts[0]
    after = {c.heading_path: (c.pk, c.text) for c in chunks_of(source=source)}
    assert {k: v for k, v in after.items() if k != "Returns"} == {
        k: v for k, v in before.items() if k != "Returns"
    }
    assert after["Returns"][0] != before["Returns"][0] and "60 days" in after["Returns"][1]
    assert Chunk.objects.filter(source=source).count() == len(sections)  # the old one gone


def test_a_killed_ingestion_resumes_embedding_each_chunk_once(base, settings):
    settings.KNOWLEDGE_EMBED_BATCH = 4
    text = "\n\n".join(
        f"## Topic {i}\n\nParagraph {i} tells about item {i} and nothing else." for i in range(30)
    )
    source = source_add_file(base=base, filename="many.md", data=text.encode())
    dying = CountingEmbedder(fail_after=3)
    with pytest.raises(KeyboardInterrupt):
        source_ingest(source_id=source.pk, embedder=dying)
    source.refresh_from_db()
    assert source.status == SourceStatus.INGESTING
    assert Chunk.objects.filter(source=source).count() == 12  # three batches written
    assert knowledge_search(bases=[base.pk], query="item 3", k=5) == []  # none live yet

    resumed = CountingEmbedder()
    assert ingest(source, resumed).status == SourceStatus.READY
    assert len(resumed.texts) == 30 - 12
    assert sorted(dying.texts + resumed.texts) == sorted(
        c.heading_path + "\n\n" + c.text for c in Chunk.objects.filter(source=source)
    )
    assert Chunk.objects.filter(source=source, live=True).count() == 30


def test_a_second_job_for_the_same_source_steps_aside(base):
    from django.db import connections

    source = source_add_file(base=base, filename="a.txt", data=b"Some words about tea.")
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [0x6B6E6F77, source.pk])
        assert source_ingest(source_id=source.pk, lock_wait_seconds=0.2).skipped
    finally:
        other.close()
    assert ingest(source).status == SourceStatus.READY


def test_an_operators_only_source_never_reaches_an_end_user(base):
    public = ingest(
        source_add_file(base=base, filename="faq.md", data=markdown_bytes(OTHER_SECTIONS))
    )
    internal = ingest(
        source_add_file(
            base=base,
            filename="internal.md",
            data=markdown_bytes([("Returns", ANSWER)]),
            visibility=Visibility.OPERATORS,
        )
    )
    for_users = knowledge_search(bases=[base.pk], query=QUESTION, k=10)
    assert for_users and {h.source_id for h in for_users} == {public.pk}
    for_operators = knowledge_search(
        bases=[base.pk], query=QUESTION, k=10, visibility=Visibility.OPERATORS
    )
    assert for_operators[0].source_id == internal.pk

    source_update(source=internal, changes={"visibility": Visibility.END_USERS})
    assert knowledge_search(bases=[base.pk], query=QUESTION, k=1)[0].source_id == internal.pk


def test_search_is_scoped_by_base_source_and_metadata(base):
    other_base = KnowledgeBase.objects.create(name="Other", slug="other")
    mine = ingest(
        source_add_file(
            base=base,
            filename="returns.md",
            data=markdown_bytes([("Returns", ANSWER)]),
            metadata={"product": "kettle"},
        )
    )
    ingest(
        source_add_file(
            base=other_base, filename="r.md", data=markdown_bytes([("Returns", ANSWER)])
        )
    )
    hits = knowledge_search(bases=[base.pk], query=QUESTION, k=10)
    assert {h.source_id for h in hits} == {mine.pk}
    assert knowledge_search(bases=[base.pk], query=QUESTION, sources=[mine.pk + 1000]) == []
    assert knowledge_search(bases=[base.pk], query=QUESTION, metadata={"product": "toaster"}) == []
    found = knowledge_search(bases=[base.pk], query=QUESTION, metadata={"product": "kettle"})
    assert [h.source_id for h in found] == [mine.pk]


def test_deleting_a_source_or_a_base_removes_every_chunk(base):
    source = ingest(source_add_file(base=base, filename="help.html", data=MAKERS["help.html"]()))
    kept = ingest(
        source_add_file(base=base, filename="faq.md", data=markdown_bytes(OTHER_SECTIONS))
    )
    assert Chunk.objects.filter(source=source).exists()
    source_delete(source=source)
    assert not Chunk.objects.filter(source_id=source.pk).exists()
    assert all(
        h.source_id == kept.pk for h in knowledge_search(bases=[base.pk], query=QUESTION, k=10)
    )
    knowledge_base_delete(base=base)
    assert not Chunk.objects.exists() and not Source.objects.exists()


def test_a_file_with_no_text_fails_in_plain_words(base):
    source = ingest(
        source_add_file(base=base, filename="empty.html", data=b"<html><nav>x</nav></html>")
    )
    assert source.status == SourceStatus.FAILED
    assert source.last_error == "no text was found in it"


def test_progress_and_the_end_are_sent_live(transactional_db):  # type: ignore[no-untyped-def]
    from knowledge.services import base_group, knowledge_base_create, source_group
    from tracing.platform.live import capture_live_events

    base = knowledge_base_create(name="Live")
    source = source_add_file(base=base, filename="faq.md", data=markdown_bytes(OTHER_SECTIONS))
    with capture_live_events() as sent:
        ingest(source)
    mine = [event for group, event in sent if group == source_group(source.pk)]
    assert [e for e in mine if e["type"] == "knowledge.progress"][-1]["chunks_total"] == 3
    assert mine[-1] == {
        "type": "knowledge.source.status",
        "source": source.pk,
        "status": "ready",
        "chunk_count": 3,
        "last_error": "",
    }
    assert {g for g, _ in sent} == {source_group(source.pk), base_group(base.pk)}


def test_a_file_a_parser_chokes_on_fails_in_plain_words(base):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", "<not-a-word-document")
    source = ingest(source_add_file(base=base, filename="odd.docx", data=buffer.getvalue()))
    assert source.status == SourceStatus.FAILED
    assert source.last_error.startswith("the DOCX cannot be read: ")


def test_nul_characters_never_reach_postgres(base):
    data = b"# Tea\n\n" + b"Green tea. " * 500 + b"Nul\x00 at the end."  # past the sniffed start
    source = source_add_file(base=base, filename="a\x00b.md", title="t\x00", data=data)
    assert ingest(source).status == SourceStatus.READY
    assert source.filename == "ab.md" and source.title == "t"
    assert chunks_of(source=source).last().text.endswith("Nul at the end.")
