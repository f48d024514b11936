"""Knowledge bases and their sources: create, add, re-index, delete, and the ingestion the
RQ job runs (`source_ingest`).

Ingestion is idempotent and resumable. A source's content (the file, or the fetched pages)
is hashed: unchanged since its last ingestion, nothing is parsed or embedded. Otherwise it
is parsed and chunked, and only the chunks whose identity (hash, occurrence, embedder) is
not stored yet are embedded, in batches, each batch written at once (not `live`). A job
killed midway leaves those batches; the next attempt finds them and embeds only the rest,
so each chunk is embedded and written once. The swap is one transaction: the new chunks go
`live`, kept ones take their new places, and every other chunk of the source is deleted;
until then searches see the version before (or nothing, for a new source).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import OperationalError, connection, transaction
from django.utils import timezone
from django.utils.text import slugify

from knowledge import conf
from knowledge.chunking import ChunkDraft, chunks_make
from knowledge.errors import FileTooLarge
from knowledge.fetching import FetchFailed, page_fetch, sitemap_page_urls, url_check
from knowledge.models import (
    Chunk,
    KnowledgeBase,
    Source,
    SourceKind,
    SourceStatus,
    Visibility,
)
from knowledge.parsing import (
    Block,
    blocks_parse,
    file_check,
    format_detect,
    html_title,
    web_format,
)
from memory.embedders import Embedder, get_embedder
from tracing.platform.enqueue import queue_job_on_commit
from tracing.platform.errors import ApplicationError, Conflict, Invalid
from tracing.platform.failures import Failure
from tracing.platform.live import broadcast
from tracing.platform.logs import get_logger

log = get_logger(__name__)

QUEUE = "maintenance"
INGEST_JOB = "knowledge.jobs.source_ingest_job"
INGEST_TIMEOUT = 3600
# A queued or ingesting source unchanged for this long lost its job (a killed worker, Redis
# away): `sources_resume` sends it again.
STALE_AFTER = timedelta(minutes=2)
LOCK_WAIT_SECONDS = 30
PROGRESS_EVERY = 0.5  # seconds
# pg_advisory_lock's first key for "a source is being ingested" (the second is its id).
_LOCK_CLASS = 0x6B6E6F77  # "know"


def source_group(source_id: int) -> str:
    """The live group a source's progress and status are sent to."""
    return f"knowledge-source-{source_id}"


def base_group(base_id: int) -> str:
    return f"knowledge-base-{base_id}"


# -- knowledge bases -----------------------------------------------------------------------
def _chunk_settings_check(chunk_tokens: int, chunk_overlap: int) -> None:
    if not 32 <= chunk_tokens <= 4000:
        raise Invalid("must be between 32 and 4000 tokens", field="chunk_tokens")
    if not 0 <= chunk_overlap <= chunk_tokens // 2:
        raise Invalid("must be between 0 and half of chunk_tokens", field="chunk_overlap")


def knowledge_base_create(
    *,
    name: str,
    slug: str = "",
    description: str = "",
    chunk_tokens: int = 300,
    chunk_overlap: int = 40,
    actor: Any = None,
) -> KnowledgeBase:
    name = name.strip()
    if not name:
        raise Invalid("must not be empty", field="name")
    slug = slugify(slug or name)[:100]
    if not slug:
        raise Invalid("must hold letters or digits", field="slug")
    _chunk_settings_check(chunk_tokens, chunk_overlap)
    if KnowledgeBase.objects.filter(slug=slug).exists():
        raise Conflict(f"a knowledge base named {slug!r} exists already", field="slug")
    return KnowledgeBase.objects.create(
        name=name,
        slug=slug,
        description=description,
        chunk_tokens=chunk_tokens,
        chunk_overlap=chunk_overlap,
        created_by=actor if getattr(actor, "pk", None) else None,
    )


def knowledge_base_update(
    *, base: KnowledgeBase, changes: dict[str, Any], reindex: bool = True
) -> KnowledgeBase:
    """Change a base's name, description or chunk settings; new chunk settings re-index
    every source (chunks whose text stays the same keep their vectors)."""
    allowed = {"name", "description", "chunk_tokens", "chunk_overlap"}
    unknown = set(changes) - allowed
    if unknown:
        raise Invalid("cannot be changed", field=sorted(unknown)[0])
    tokens = changes.get("chunk_tokens", base.chunk_tokens)
    overlap = changes.get("chunk_overlap", base.chunk_overlap)
    _chunk_settings_check(tokens, overlap)
    rechunk = (tokens, overlap) != (base.chunk_tokens, base.chunk_overlap)
    for key, value in changes.items():
        setattr(base, key, value)
    with transaction.atomic():
        base.save()
        if rechunk and reindex:
            for source in base.sources.defer("data"):
                source_reindex(source=source, force=True)
    return base


def knowledge_base_delete(*, base: KnowledgeBase) -> None:
    """Delete the base, its sources and every chunk of them."""
    with transaction.atomic():
        Chunk.objects.filter(base=base)._raw_delete(Chunk.objects.db)
        Source.objects.filter(base=base)._raw_delete(Source.objects.db)
        base.delete()


# -- sources --------------------------------------------------------------------------------
def _visibility_check(visibility: str) -> str:
    if visibility not in Visibility.values:
        raise Invalid(f"must be one of {', '.join(Visibility.values)}", field="visibility")
    return visibility


def _metadata_check(metadata: dict[str, Any] | None) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or any(isinstance(v, dict | list) for v in metadata.values()):
        raise Invalid("must be an object of plain values", field="metadata")
    return metadata


def upload_size_check(*, size: int) -> None:
    """Refuse a file over the upload limit (413 naming `file`), before it is read."""
    limit = conf.upload_max_bytes()
    if size > limit:
        raise FileTooLarge(
            f"the file is {size} bytes, over the limit of {limit} bytes", field="file"
        )


def source_add_file(
    *,
    base: KnowledgeBase,
    filename: str,
    data: bytes,
    media_type: str = "",
    title: str = "",
    visibility: str = Visibility.END_USERS,
    metadata: dict[str, Any] | None = None,
    actor: Any = None,
) -> Source:
    """Keep an uploaded file as a source and queue its ingestion. A file over the limit
    (413), of a type no parser reads (415), or not what it claims (422) is refused, naming
    `file`; nothing is stored then."""
    upload_size_check(size=len(data))
    filename, title = filename.replace("\x00", "")[:300], title.replace("\x00", "")[:300]
    fmt = format_detect(filename=filename, media_type=media_type)
    file_check(data=data, fmt=fmt)
    source = Source.objects.create(
        base=base,
        kind=SourceKind.FILE,
        title=title.strip() or filename,
        filename=filename,
        content_type=fmt,
        data=data,
        visibility=_visibility_check(visibility),
        metadata=_metadata_check(metadata),
        added_by=actor if getattr(actor, "pk", None) else None,
    )
    _ingest_enqueue(source)
    return source


def source_add_url(
    *,
    base: KnowledgeBase,
    url: str,
    kind: str = SourceKind.URL,
    title: str = "",
    visibility: str = Visibility.END_USERS,
    recrawl_hours: int | None = None,
    metadata: dict[str, Any] | None = None,
    actor: Any = None,
) -> Source:
    """A web page or a sitemap, fetched through the egress guard: an address the guard
    refuses (loopback, private, cloud metadata) is refused here, naming `url`."""
    if kind not in (SourceKind.URL, SourceKind.SITEMAP):
        raise Invalid("must be 'url' or 'sitemap'", field="kind")
    if recrawl_hours is not None and not 1 <= recrawl_hours <= 24 * 365:
        raise Invalid("must be between 1 and 8760 hours", field="recrawl_hours")
    url = url_check(url)
    source = Source.objects.create(
        base=base,
        kind=kind,
        title=title.strip(),
        url=url,
        visibility=_visibility_check(visibility),
        recrawl_hours=recrawl_hours,
        metadata=_metadata_check(metadata),
        added_by=actor if getattr(actor, "pk", None) else None,
    )
    _ingest_enqueue(source)
    return source


def source_update(*, source: Source, changes: dict[str, Any]) -> Source:
    """Change a source's title, visibility, metadata or re-crawl interval. Its chunks take
    the new visibility in the same transaction."""
    allowed = {"title", "visibility", "metadata", "recrawl_hours"}
    unknown = set(changes) - allowed
    if unknown:
        raise Invalid("cannot be changed", field=sorted(unknown)[0])
    if "visibility" in changes:
        _visibility_check(changes["visibility"])
    if "metadata" in changes:
        _metadata_check(changes["metadata"])
    with transaction.atomic():
        for key, value in changes.items():
            setattr(source, key, value)
        source.save(update_fields=[*changes, "updated_at"])
        if "visibility" in changes:
            Chunk.objects.filter(source=source).update(visibility=source.visibility)
        if "metadata" in changes:
            source_reindex(source=source, force=True)
    return source


def source_reindex(*, source: Source, force: bool = False) -> Source:
    """Queue the source's ingestion again: a web source is fetched anew; `force` re-chunks
    an unchanged content too (new chunk settings). Unchanged chunks keep their vectors."""
    if source.status == SourceStatus.INGESTING and not force:
        raise Conflict("the source is being ingested now", field="source")
    updates: dict[str, Any] = {"status": SourceStatus.QUEUED, "updated_at": timezone.now()}
    if force:
        updates["content_hash"] = ""
    Source.objects.filter(pk=source.pk).update(**updates)
    for key, value in updates.items():
        setattr(source, key, value)
    _ingest_enqueue(source)
    return source


def source_delete(*, source: Source) -> None:
    """Delete the source and every chunk of it (a job still running finds it gone)."""
    with transaction.atomic():
        Chunk.objects.filter(source=source)._raw_delete(Chunk.objects.db)
        source_id, base_id = source.pk, source.base_id
        source.delete()
        event = {"type": "knowledge.source.deleted", "source": source_id}
        broadcast(source_group(source_id), event)
        broadcast(base_group(base_id), event)


def _ingest_enqueue(source: Source) -> None:
    queue_job_on_commit(
        queue=QUEUE,
        func=INGEST_JOB,
        args=(source.pk,),
        job_timeout=INGEST_TIMEOUT,
        sweep="knowledge.services.sources_resume",
    )


def sources_resume(*, stale_after: timedelta = STALE_AFTER) -> int:
    """Queue again the sources whose ingestion stopped without an end (for the scheduler)."""
    cutoff = timezone.now() - stale_after
    stale = list(
        Source.objects.filter(
            status__in=[SourceStatus.QUEUED, SourceStatus.INGESTING], updated_at__lte=cutoff
        ).values_list("pk", flat=True)
    )
    if stale:
        Source.objects.filter(pk__in=stale).update(updated_at=timezone.now())
        queue_job_on_commit(
            queue=QUEUE,
            func=INGEST_JOB,
            each=[(pk,) for pk in stale],
            job_timeout=INGEST_TIMEOUT,
            sweep="knowledge.services.sources_resume",
        )
    return len(stale)


def sources_recrawl_due() -> int:
    """Queue the web sources whose re-crawl time came (for the scheduler)."""
    due = list(
        Source.objects.filter(
            next_crawl_at__lte=timezone.now(),
            status__in=[SourceStatus.READY, SourceStatus.FAILED],
        ).values_list("pk", flat=True)
    )
    if due:
        Source.objects.filter(pk__in=due).update(
            status=SourceStatus.QUEUED, next_crawl_at=None, updated_at=timezone.now()
        )
        queue_job_on_commit(
            queue=QUEUE,
            func=INGEST_JOB,
            each=[(pk,) for pk in due],
            job_timeout=INGEST_TIMEOUT,
            sweep="knowledge.services.sources_resume",
        )
    return len(due)


# -- ingestion ------------------------------------------------------------------------------
@dataclass
class IngestResult:
    source_id: int
    status: str
    chunks: int = 0
    embedded: int = 0
    reused: int = 0
    skipped: bool = False  # another job holds the source, or it is gone


class _Progress:
    """The ingestion's progress on the source row (the page reads it) and to its live group."""

    def __init__(self, source: Source) -> None:
        self.source_id = source.pk
        self.base_id = source.base_id
        self.started = time.monotonic()
        self.written_at = 0.0
        self.state: dict[str, Any] = {
            "phase": "fetching" if source.is_web else "parsing",
            "started_at": timezone.now().isoformat(),
            "pages_done": 0,
            "pages_total": None,
            "chunks_total": None,
            "chunks_done": 0,
            "chunks_embedded": 0,
            "chunks_reused": 0,
            "rate": None,
            "eta_seconds": None,
            # The process ingesting (a stuck source names its worker's work horse).
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }

    def update(self, *, force: bool = False, **changes: Any) -> None:
        """Record `changes`; written and sent at most every PROGRESS_EVERY seconds, unless
        `force` or a count the page needs first (a phase, a total) changed."""
        self.state.update(changes)
        now = time.monotonic()
        embedded = self.state["chunks_embedded"]
        if embedded and now > self.started:
            rate = embedded / (now - self.started)
            self.state["rate"] = round(rate, 1)
            total, done = self.state["chunks_total"], self.state["chunks_done"]
            if total is not None:
                self.state["eta_seconds"] = round(max(total - done, 0) / rate, 1)
        needed_first = {"phase", "chunks_total", "pages_total"} & set(changes)
        if not (force or needed_first) and now - self.written_at < PROGRESS_EVERY:
            return
        self.written_at = now
        Source.objects.filter(pk=self.source_id).update(
            progress=self.state, updated_at=timezone.now()
        )
        event = {"type": "knowledge.progress", "source": self.source_id, **self.state}
        broadcast(source_group(self.source_id), event)
        broadcast(base_group(self.base_id), event)


def _status_send(source: Source) -> None:
    event = {
        "type": "knowledge.source.status",
        "source": source.pk,
        "status": source.status,
        "chunk_count": source.chunk_count,
        "last_error": source.last_error,
    }
    broadcast(source_group(source.pk), event)
    broadcast(base_group(source.base_id), event)


def _lock(source_id: int, wait_seconds: float) -> bool:
    """The source's ingestion lock, waited for up to `wait_seconds`: a job killed a moment ago
    holds it until Postgres has seen its connection close."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('lock_timeout', %s, false)",
            [f"{max(1, int(wait_seconds * 1000))}ms"],
        )
        try:
            with transaction.atomic():
                cursor.execute("SELECT pg_advisory_lock(%s, %s)", [_LOCK_CLASS, source_id])
        except OperationalError:
            return False
        finally:
            cursor.execute("RESET lock_timeout")
        return True


def _unlock(source_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_CLASS, source_id])


def source_ingest(
    *,
    source_id: int,
    embedder: Embedder | None = None,
    on_batch: Callable[[int], None] | None = None,
    lock_wait_seconds: float = LOCK_WAIT_SECONDS,
) -> IngestResult:
    """Ingest a source (the RQ job's body; see the module's docstring). One job per source
    at a time (an advisory lock: a second one returns at once). `embedder` defaults to the
    configured one; `on_batch(n)` is told each batch written (tests, the benchmark)."""
    if not _lock(source_id, lock_wait_seconds):
        return IngestResult(source_id, "", skipped=True)
    try:
        return _ingest_locked(source_id, embedder or get_embedder(), on_batch)
    finally:
        _unlock(source_id)


def _ingest_locked(
    source_id: int, embedder: Embedder, on_batch: Callable[[int], None] | None
) -> IngestResult:
    source = Source.objects.select_related("base").filter(pk=source_id).first()
    if source is None:
        return IngestResult(source_id, "", skipped=True)
    Source.objects.filter(pk=source_id).update(
        status=SourceStatus.INGESTING, updated_at=timezone.now()
    )
    progress = _Progress(source)
    progress.update()
    try:
        blocks, digest = _source_blocks(source, progress)
        if (
            digest == source.content_hash
            and not Chunk.objects.filter(source_id=source_id)
            .exclude(live=True, embedder=embedder.name)
            .exists()
        ):
            # Unchanged since its last ingestion, every chunk live with this embedder.
            count = Chunk.objects.filter(source_id=source_id).count()
            progress.state.update(
                phase="done", chunks_total=count, chunks_done=count, chunks_reused=count
            )
            _finish(
                source,
                status=SourceStatus.READY,
                chunk_count=count,
                digest=digest,
                progress=progress.state,
            )
            return IngestResult(source_id, SourceStatus.READY, chunks=count, reused=count)
        drafts = chunks_make(
            blocks, chunk_tokens=source.base.chunk_tokens, overlap=source.base.chunk_overlap
        )
        if not drafts:
            raise FetchFailed("no text was found in it")
        for draft in drafts:
            draft.metadata = {**source.metadata, **draft.metadata}
        embedded, reused = _chunks_write(source, drafts, embedder, progress, on_batch)
        if not _swap(source, drafts, embedder.name, digest, progress):
            return IngestResult(source_id, "", skipped=True)  # deleted meanwhile
        return IngestResult(
            source_id, SourceStatus.READY, chunks=len(drafts), embedded=embedded, reused=reused
        )
    except (ApplicationError, FetchFailed, Failure) as exc:
        message = exc.message if isinstance(exc, ApplicationError) else str(exc)
        log.warning("knowledge.ingest_failed", source=source_id, error=message)
        progress.state["phase"] = "failed"
        _finish(source, status=SourceStatus.FAILED, error=message, progress=progress.state)
        return IngestResult(source_id, SourceStatus.FAILED)


def _source_blocks(source: Source, progress: _Progress) -> tuple[list[Block], str]:
    """The source's blocks and the hash of the content they came from."""
    if source.kind == SourceKind.FILE:
        data = bytes(source.data or b"")
        parsed = blocks_parse(data=data, fmt=source.content_type)
        pages = {b.metadata.get("page") for b in parsed} - {None}
        progress.update(pages_total=len(pages) or 1, pages_done=len(pages) or 1, phase="embedding")
        return parsed, hashlib.sha256(data).hexdigest()
    urls = sitemap_page_urls(source.url) if source.kind == SourceKind.SITEMAP else [source.url]
    progress.update(pages_total=len(urls))
    digest = hashlib.sha256()
    blocks: list[Block] = []
    for number, url in enumerate(urls, 1):
        page = page_fetch(url)
        fmt = web_format(url=page.url, media_type=page.media_type)
        digest.update(page.url.encode() + b"\0" + page.body + b"\0")
        page_blocks = blocks_parse(data=page.body, fmt=fmt)
        for block in page_blocks:
            block.metadata = {**block.metadata, "url": page.url}
        blocks += page_blocks
        if number == 1 and source.kind == SourceKind.URL and not source.title and fmt == "html":
            title = html_title(page.body.decode("utf-8", errors="replace"))[:300]
            if title:
                Source.objects.filter(pk=source.pk).update(title=title)
        progress.update(pages_done=number, force=number == len(urls))
    progress.update(phase="embedding")
    return blocks, digest.hexdigest()


def _chunks_write(
    source: Source,
    drafts: list[ChunkDraft],
    embedder: Embedder,
    progress: _Progress,
    on_batch: Callable[[int], None] | None,
) -> tuple[int, int]:
    """Embed and write, batch by batch, the chunks not stored yet; (embedded, reused)."""
    stored = set(
        Chunk.objects.filter(source=source, embedder=embedder.name).values_list(
            "content_hash", "occurrence"
        )
    )
    todo = [d for d in drafts if d.key not in stored]
    reused = len(drafts) - len(todo)
    progress.update(chunks_total=len(drafts), chunks_done=reused, chunks_reused=reused)
    batch_size = conf.embed_batch_size()
    embedded = 0
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        vectors = embedder.embed([d.embed_text for d in batch])
        Chunk.objects.bulk_create(
            [
                Chunk(
                    source_id=source.pk,
                    base_id=source.base_id,
                    visibility=source.visibility,
                    live=False,
                    ordinal=d.ordinal,
                    occurrence=d.occurrence,
                    heading_path=d.heading_path,
                    text=d.text,
                    token_count=d.token_count,
                    content_hash=d.content_hash,
                    metadata=d.metadata,
                    embedding=vector,
                    embedder=embedder.name,
                )
                for d, vector in zip(batch, vectors, strict=True)
            ],
            ignore_conflicts=True,
        )
        embedded += len(batch)
        progress.update(chunks_done=reused + embedded, chunks_embedded=embedded)
        if on_batch is not None:
            on_batch(len(batch))
    return embedded, reused


def _swap(
    source: Source,
    drafts: Sequence[ChunkDraft],
    embedder_name: str,
    digest: str,
    progress: _Progress,
) -> bool:
    """In one transaction: the new version's chunks live in their places, the rest gone."""
    with transaction.atomic():
        locked = Source.objects.select_for_update().filter(pk=source.pk).first()
        if locked is None:
            return False
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS knowledge_swap")
            cursor.execute(
                "CREATE TEMP TABLE knowledge_swap (content_hash varchar(64), occurrence int,"
                " ordinal int, heading_path text, metadata jsonb) ON COMMIT DROP"
            )
            with cursor.copy(
                "COPY knowledge_swap (content_hash, occurrence, ordinal, heading_path, metadata)"
                " FROM STDIN"
            ) as copy:
                for d in drafts:
                    copy.write_row(
                        (
                            d.content_hash,
                            d.occurrence,
                            d.ordinal,
                            d.heading_path,
                            json.dumps(d.metadata),
                        )
                    )
            cursor.execute(
                "DELETE FROM knowledge_chunk c WHERE c.source_id = %s AND (c.embedder <> %s"
                " OR NOT EXISTS (SELECT 1 FROM knowledge_swap s WHERE s.content_hash ="
                " c.content_hash AND s.occurrence = c.occurrence))",
                [source.pk, embedder_name],
            )
            cursor.execute(
                "UPDATE knowledge_chunk c SET live = true, ordinal = s.ordinal, visibility = %s,"
                " metadata = s.metadata FROM knowledge_swap s WHERE c.source_id = %s AND"
                " c.content_hash = s.content_hash AND c.occurrence = s.occurrence AND"
                " (NOT c.live OR c.ordinal <> s.ordinal OR c.visibility <> %s"
                " OR c.metadata <> s.metadata)",
                [locked.visibility, source.pk, locked.visibility],
            )
            cursor.execute("DROP TABLE knowledge_swap")
        progress.state["phase"] = "done"
        _finish(
            locked,
            status=SourceStatus.READY,
            chunk_count=len(drafts),
            digest=digest,
            progress=progress.state,
        )
    return True


def _finish(
    source: Source,
    *,
    status: str,
    chunk_count: int | None = None,
    digest: str | None = None,
    error: str = "",
    progress: dict[str, Any] | None = None,
) -> None:
    now = timezone.now()
    updates: dict[str, Any] = {"status": status, "last_error": error[:2000], "updated_at": now}
    if progress is not None:
        updates["progress"] = progress
    if status == SourceStatus.READY:
        updates["ingested_at"] = now
        if chunk_count is not None:
            updates["chunk_count"] = chunk_count
        if digest is not None:
            updates["content_hash"] = digest
    if source.is_web and source.recrawl_hours:
        updates["next_crawl_at"] = now + timedelta(hours=source.recrawl_hours)
    Source.objects.filter(pk=source.pk).update(**updates)
    for key, value in updates.items():
        setattr(source, key, value)
    _status_send(source)
