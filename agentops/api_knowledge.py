"""Knowledge bases through the API: bases, sources (a file upload, a web page, a sitemap),
re-index, delete (every chunk goes), the chunk browser and the retrieval test (each hit with
both methods' ranks and scores and the fused rank). Operators read and search; admins
change. A refusal is the service's, mapped once (agentops.api.on_application_error): a file
over the limit is a 413, a type no parser reads a 415, a corrupt file or a URL the egress
guard refuses a 422, each naming the field."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import File, Form, Path, Router, Schema, UploadedFile
from pydantic import ConfigDict, Field

from agentops.api import BODY_ERRORS, FOUND_ERRORS, MAX_INT, ErrorOut, Text
from agentops.auth import role_require
from knowledge.models import KnowledgeBase, Source, SourceKind, SourceStatus, Visibility
from knowledge.selectors import chunks_of, knowledge_bases_all, knowledge_search, sources_of
from knowledge.services import (
    knowledge_base_create,
    knowledge_base_delete,
    knowledge_base_update,
    source_add_file,
    source_add_url,
    source_delete,
    source_reindex,
    source_update,
    upload_size_check,
)

router: Router = Router(tags=["knowledge"])

BaseId = Annotated[int, Path(ge=1, le=MAX_INT)]
SourceId = Annotated[int, Path(ge=1, le=MAX_INT)]
UPLOAD_ERRORS = {**FOUND_ERRORS, **BODY_ERRORS, 415: ErrorOut}
VISIBILITY = "end_users: the agent may use it with anyone; operators: only with operators"


class BaseOut(Schema):
    id: int
    name: str
    slug: str
    description: str
    chunk_tokens: int
    chunk_overlap: int
    sources: int
    created_at: datetime
    updated_at: datetime


class BaseIn(Schema):
    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=200)
    slug: Text = Field(default="", max_length=100, description="Made from the name if empty")
    description: Text = Field(default="", max_length=4000)
    chunk_tokens: int = Field(default=300, ge=32, le=4000)
    chunk_overlap: int = Field(default=40, ge=0, le=2000)


class BasePatch(Schema):
    """Leave a field out to keep it. New chunk settings re-index every source."""

    model_config = ConfigDict(extra="forbid")

    name: Text | None = Field(default=None, min_length=1, max_length=200)
    description: Text | None = Field(default=None, max_length=4000)
    chunk_tokens: int | None = Field(default=None, ge=32, le=4000)
    chunk_overlap: int | None = Field(default=None, ge=0, le=2000)


class SourceOut(Schema):
    id: int
    base: int
    kind: SourceKind
    title: str
    filename: str
    url: str
    content_type: str
    status: SourceStatus
    last_error: str
    chunk_count: int
    progress: dict[str, Any] = Field(
        description="pages_done, pages_total, chunks_done, chunks_total, chunks_embedded, "
        "chunks_reused, rate (chunks/s), eta_seconds, phase"
    )
    visibility: Visibility = Field(description=VISIBILITY)
    metadata: dict[str, Any]
    recrawl_hours: int | None
    next_crawl_at: datetime | None
    added_by: str | None
    created_at: datetime
    ingested_at: datetime | None


class UrlSourceIn(Schema):
    model_config = ConfigDict(extra="forbid")

    url: Text = Field(min_length=1, max_length=2000)
    kind: SourceKind = Field(default=SourceKind.URL, description="url or sitemap")
    title: Text = Field(default="", max_length=300)
    visibility: Visibility = Field(default=Visibility.END_USERS, description=VISIBILITY)
    recrawl_hours: int | None = Field(default=None, ge=1, le=8760)
    metadata: dict[Text, Text | int | float | bool] = Field(default_factory=dict)


class SourcePatch(Schema):
    model_config = ConfigDict(extra="forbid")

    title: Text | None = Field(default=None, max_length=300)
    visibility: Visibility | None = Field(default=None, description=VISIBILITY)
    recrawl_hours: int | None = Field(default=None, ge=1, le=8760)
    metadata: dict[Text, Text | int | float | bool] | None = None


class ChunkOut(Schema):
    id: int
    ordinal: int
    heading_path: str
    text: str
    token_count: int
    metadata: dict[str, Any]


class SearchIn(Schema):
    model_config = ConfigDict(extra="forbid")

    query: Text = Field(min_length=1, max_length=4000)
    bases: list[Annotated[int, Field(ge=1, le=MAX_INT)]] = Field(min_length=1, max_length=50)
    k: int = Field(default=5, ge=1, le=50)
    sources: list[Annotated[int, Field(ge=1, le=MAX_INT)]] | None = Field(
        default=None, max_length=500
    )
    visibility: Visibility = Field(
        default=Visibility.END_USERS,
        description="The audience: end_users sees only sources visible to end users",
    )
    metadata: dict[Text, Text | int | float | bool] | None = None


class HitOut(Schema):
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
    vector_rank: int | None
    vector_score: float | None = Field(description="Cosine similarity")
    text_rank: int | None
    text_score: float | None = Field(description="Full-text rank (ts_rank_cd)")


def base_out(base: KnowledgeBase) -> dict[str, Any]:
    return {
        **{
            name: getattr(base, name)
            for name in (
                "id",
                "name",
                "slug",
                "description",
                "chunk_tokens",
                "chunk_overlap",
                "created_at",
                "updated_at",
            )
        },
        "sources": base.sources.count(),
    }


def source_out(source: Source) -> dict[str, Any]:
    return {
        **{
            name: getattr(source, name)
            for name in (
                "id",
                "kind",
                "title",
                "filename",
                "url",
                "content_type",
                "status",
                "last_error",
                "chunk_count",
                "progress",
                "visibility",
                "metadata",
                "recrawl_hours",
                "next_crawl_at",
                "created_at",
                "ingested_at",
            )
        },
        "base": source.base_id,
        "added_by": source.added_by.username if source.added_by else None,
    }


def _base(base_id: int) -> KnowledgeBase:
    return get_object_or_404(KnowledgeBase, pk=base_id)


def _source(source_id: int) -> Source:
    return get_object_or_404(Source.objects.defer("data").select_related("added_by"), pk=source_id)


@router.get("/knowledge/bases", response={200: list[BaseOut], **FOUND_ERRORS})
def list_knowledge_bases(request: HttpRequest) -> list[dict[str, Any]]:
    role_require(user=request.user, role="operator")
    return [base_out(base) for base in knowledge_bases_all()]


@router.post("/knowledge/bases", response={201: BaseOut, 409: ErrorOut, **UPLOAD_ERRORS})
def create_knowledge_base(request: HttpRequest, payload: BaseIn) -> tuple[int, dict[str, Any]]:
    role_require(user=request.user, role="admin")
    base = knowledge_base_create(**payload.dict(), actor=request.user)
    return 201, base_out(base)


@router.get("/knowledge/bases/{base_id}", response={200: BaseOut, **FOUND_ERRORS})
def get_knowledge_base(request: HttpRequest, base_id: BaseId) -> dict[str, Any]:
    role_require(user=request.user, role="operator")
    return base_out(_base(base_id))


@router.patch("/knowledge/bases/{base_id}", response={200: BaseOut, **UPLOAD_ERRORS})
def update_knowledge_base(
    request: HttpRequest, base_id: BaseId, payload: BasePatch
) -> dict[str, Any]:
    role_require(user=request.user, role="admin")
    base = knowledge_base_update(base=_base(base_id), changes=payload.dict(exclude_unset=True))
    return base_out(base)


@router.delete("/knowledge/bases/{base_id}", response={204: None, **FOUND_ERRORS})
def delete_knowledge_base(request: HttpRequest, base_id: BaseId) -> tuple[int, None]:
    role_require(user=request.user, role="admin")
    knowledge_base_delete(base=_base(base_id))
    return 204, None


@router.get("/knowledge/bases/{base_id}/sources", response={200: list[SourceOut], **FOUND_ERRORS})
def list_knowledge_sources(request: HttpRequest, base_id: BaseId) -> list[dict[str, Any]]:
    role_require(user=request.user, role="operator")
    return [source_out(source) for source in sources_of(base=_base(base_id))]


@router.post(
    "/knowledge/bases/{base_id}/files",
    response={202: SourceOut, **UPLOAD_ERRORS},
    summary="Upload a file (PDF, DOCX, HTML, Markdown, text, CSV) as a source; ingested in the background",
)
def upload_knowledge_file(
    request: HttpRequest,
    base_id: BaseId,
    file: File[UploadedFile],
    title: Form[str] = "",
    visibility: Form[Visibility] = Visibility.END_USERS,
) -> tuple[int, dict[str, Any]]:
    role_require(user=request.user, role="admin")
    base = _base(base_id)
    upload_size_check(size=file.size or 0)
    source = source_add_file(
        base=base,
        filename=file.name or "",
        data=file.read(),
        media_type=file.content_type or "",
        title=title,
        visibility=visibility,
        actor=request.user,
    )
    return 202, source_out(source)


@router.post(
    "/knowledge/bases/{base_id}/urls",
    response={202: SourceOut, **UPLOAD_ERRORS},
    summary="Add a web page or a sitemap as a source, fetched through the egress guard",
)
def add_knowledge_url(
    request: HttpRequest, base_id: BaseId, payload: UrlSourceIn
) -> tuple[int, dict[str, Any]]:
    role_require(user=request.user, role="admin")
    source = source_add_url(base=_base(base_id), **payload.dict(), actor=request.user)
    return 202, source_out(source)


@router.get("/knowledge/sources/{source_id}", response={200: SourceOut, **FOUND_ERRORS})
def get_knowledge_source(request: HttpRequest, source_id: SourceId) -> dict[str, Any]:
    role_require(user=request.user, role="operator")
    return source_out(_source(source_id))


@router.patch("/knowledge/sources/{source_id}", response={200: SourceOut, **UPLOAD_ERRORS})
def update_knowledge_source(
    request: HttpRequest, source_id: SourceId, payload: SourcePatch
) -> dict[str, Any]:
    role_require(user=request.user, role="admin")
    source = source_update(source=_source(source_id), changes=payload.dict(exclude_unset=True))
    return source_out(source)


@router.post(
    "/knowledge/sources/{source_id}/reindex",
    response={202: SourceOut, 409: ErrorOut, **FOUND_ERRORS, **BODY_ERRORS},
    summary="Ingest the source again (a web source is fetched anew; unchanged chunks keep their vectors)",
)
def reindex_knowledge_source(
    request: HttpRequest, source_id: SourceId
) -> tuple[int, dict[str, Any]]:
    role_require(user=request.user, role="admin")
    return 202, source_out(source_reindex(source=_source(source_id)))


@router.delete("/knowledge/sources/{source_id}", response={204: None, **FOUND_ERRORS})
def delete_knowledge_source(request: HttpRequest, source_id: SourceId) -> tuple[int, None]:
    role_require(user=request.user, role="admin")
    source_delete(source=_source(source_id))
    return 204, None


@router.get("/knowledge/sources/{source_id}/chunks", response={200: list[ChunkOut], **FOUND_ERRORS})
def list_knowledge_chunks(request: HttpRequest, source_id: SourceId) -> list[dict[str, Any]]:
    role_require(user=request.user, role="operator")
    return [
        {
            "id": c.pk,
            "ordinal": c.ordinal,
            "heading_path": c.heading_path,
            "text": c.text,
            "token_count": c.token_count,
            "metadata": c.metadata,
        }
        for c in chunks_of(source=_source(source_id))
    ]


@router.post(
    "/knowledge/search",
    response={200: list[HitOut], **FOUND_ERRORS, **BODY_ERRORS},
    summary="Hybrid retrieval (vector + full text, fused by reciprocal rank): the retrieval test",
)
def search_knowledge(request: HttpRequest, payload: SearchIn) -> list[dict[str, Any]]:
    role_require(user=request.user, role="operator")
    hits = knowledge_search(
        bases=payload.bases,
        query=payload.query,
        k=payload.k,
        sources=payload.sources,
        visibility=payload.visibility,
        metadata=payload.metadata,
    )
    return [hit.as_dict() for hit in hits]
