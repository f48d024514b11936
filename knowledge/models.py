"""Knowledge bases, their sources and the chunks retrieval searches.

A chunk's identity within its source is (content hash, occurrence, embedder): re-ingesting a
source keeps the rows whose text is unchanged (and their vectors), writes the new ones as
not yet `live`, and swaps them in with the removal of the old ones in one transaction
(`knowledge.services.source_ingest`). Retrieval reads `live` rows only, so nothing
half-ingested is ever found.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.db.models import Q
from pgvector.django import HnswIndex, VectorField

from memory.models import EMBEDDING_DIMENSIONS

# The full-text configuration of every chunk's `search` column (a generated column cannot
# read its base's language; a base in another language would need a column of its own).
SEARCH_CONFIG = "english"


class Visibility(models.TextChoices):
    END_USERS = "end_users", "end users and operators"
    OPERATORS = "operators", "operators only"


class KnowledgeBase(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True, default="")
    chunk_tokens = models.PositiveIntegerField(default=300)
    chunk_overlap = models.PositiveIntegerField(default=40)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SourceKind(models.TextChoices):
    FILE = "file"
    URL = "url"
    SITEMAP = "sitemap"


class SourceStatus(models.TextChoices):
    QUEUED = "queued"
    INGESTING = "ingesting"
    READY = "ready"
    FAILED = "failed"


class Source(models.Model):
    base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="sources")
    kind = models.CharField(max_length=10, choices=SourceKind.choices)
    title = models.CharField(max_length=300, blank=True, default="")
    filename = models.CharField(max_length=300, blank=True, default="")
    url = models.URLField(max_length=2000, blank=True, default="")
    # The parser's name for the format ("pdf", "docx", "html", "markdown", "text", "csv").
    content_type = models.CharField(max_length=20, blank=True, default="")
    # An uploaded file's bytes (a web source's are fetched at each crawl). Deferred in lists.
    data = models.BinaryField(null=True, blank=True, editable=False)
    status = models.CharField(
        max_length=10, choices=SourceStatus.choices, default=SourceStatus.QUEUED
    )
    last_error = models.TextField(blank=True, default="")
    chunk_count = models.PositiveIntegerField(default=0)
    # SHA-256 of what was last ingested (the file, or the fetched pages): unchanged, no work.
    content_hash = models.CharField(max_length=64, blank=True, default="")
    # pages/chunks done, embedded, rate, time left: the current or last ingestion.
    progress = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    visibility = models.CharField(
        max_length=10, choices=Visibility.choices, default=Visibility.END_USERS
    )
    recrawl_hours = models.PositiveIntegerField(null=True, blank=True)
    next_crawl_at = models.DateTimeField(null=True, blank=True)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ingested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["base", "-created_at"]),
            models.Index(
                fields=["next_crawl_at"],
                name="knowledge_source_crawl_idx",
                condition=Q(next_crawl_at__isnull=False),
            ),
            models.Index(
                fields=["updated_at"],
                name="knowledge_source_unfinished",
                condition=Q(status__in=["queued", "ingesting"]),
            ),
        ]

    def __str__(self) -> str:
        return self.title or self.filename or self.url

    @property
    def is_web(self) -> bool:
        return self.kind in (SourceKind.URL, SourceKind.SITEMAP)


class Chunk(models.Model):
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="chunks")
    # Copied from the source so that retrieval filters one table.
    base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="+")
    visibility = models.CharField(max_length=10, choices=Visibility.choices)
    live = models.BooleanField(default=False)
    ordinal = models.PositiveIntegerField()
    occurrence = models.PositiveIntegerField(default=0)
    heading_path = models.TextField(blank=True, default="")
    text = models.TextField()
    token_count = models.PositiveIntegerField()
    content_hash = models.CharField(max_length=64)
    # The page (PDF), the URL (sitemap) and the source's own metadata, for filters and citations.
    metadata = models.JSONField(default=dict, blank=True)
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    embedder = models.CharField(max_length=100)
    search = models.GeneratedField(
        expression=SearchVector("heading_path", weight="A", config=SEARCH_CONFIG)
        + SearchVector("text", weight="B", config=SEARCH_CONFIG),
        output_field=SearchVectorField(),
        db_persist=True,
    )
    created_at = models.DateTimeField(auto_now_add=True)

    # Set on rows a search returns (knowledge.selectors.knowledge_search); not columns.
    distance: float

    class Meta:
        indexes = [
            HnswIndex(
                name="knowledge_chunk_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
            GinIndex(fields=["search"], name="knowledge_chunk_search"),
            models.Index(fields=["source", "ordinal"]),
            models.Index(
                fields=["base", "visibility"], condition=Q(live=True), name="knowledge_chunk_live"
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "content_hash", "occurrence", "embedder"],
                name="knowledge_chunk_identity",
            )
        ]

    def __str__(self) -> str:
        return self.text[:60]
