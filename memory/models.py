from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from pgvector.django import HnswIndex, VectorField

EMBEDDING_DIMENSIONS = 256


class MemoryKind(models.TextChoices):
    FACT = "fact"
    PREFERENCE = "preference"
    EPISODE = "episode"
    SUMMARY = "summary"


class Memory(models.Model):
    """A long-term memory, scoped to an agent and optionally one external user.

    `agent_id` is a plain id (memory imports no other app of ours); `user_key` is ''
    for agent-wide memories.
    """

    agent_id = models.BigIntegerField()
    user_key = models.CharField(max_length=200, blank=True, default="")
    text = models.TextField()
    kind = models.CharField(max_length=12, choices=MemoryKind.choices, default=MemoryKind.FACT)
    importance = models.FloatField(default=0.5)
    metadata = models.JSONField(default=dict, blank=True)
    pinned = models.BooleanField(default=False)
    content_hash = models.CharField(max_length=64)
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS, null=True, blank=True)
    embedder = models.CharField(max_length=100, blank=True, default="")
    source_run_id = models.UUIDField(null=True, blank=True)
    source_step = models.PositiveIntegerField(null=True, blank=True)
    edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_accessed_at = models.DateTimeField(null=True, blank=True)
    access_count = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True)

    # Set on rows a vector search returns (memory.selectors.memory_search); not columns.
    distance: float
    similarity: float

    class Meta:
        verbose_name_plural = "memories"
        indexes = [
            HnswIndex(
                name="memory_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
            models.Index(fields=["agent_id", "user_key"]),
            models.Index(fields=["agent_id", "pinned"]),
            models.Index(
                fields=["expires_at"],
                name="memory_expires_idx",
                condition=Q(expires_at__isnull=False),
            ),
            # The sweep for memories whose embedding job was lost (memories_embed_missing).
            models.Index(
                fields=["created_at"],
                name="memory_unembedded_idx",
                condition=Q(embedding__isnull=True),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["agent_id", "user_key", "content_hash"], name="memory_unique_content"
            )
        ]

    def __str__(self) -> str:
        return self.text[:60]

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()


class MemoryRevision(models.Model):
    memory = models.ForeignKey(Memory, on_delete=models.CASCADE, related_name="revisions")
    text = models.TextField()
    edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"revision of {self.memory_id}"


class MemoryRecall(models.Model):
    """A run's recall returned this memory (provenance for the memory pages)."""

    memory = models.ForeignKey(Memory, on_delete=models.CASCADE, related_name="recalls")
    run_id = models.UUIDField()
    score = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["run_id"])]

    def __str__(self) -> str:
        return f"recall of {self.memory_id} by {self.run_id}"


class MemoryAction(models.TextChoices):
    CREATED = "created"
    MERGED = "merged"
    UPDATED = "updated"
    PINNED = "pinned"
    UNPINNED = "unpinned"
    AUTO_PINNED = "auto_pinned"
    DELETED = "deleted"
    EXPIRED = "expired"


class MemoryEvent(models.Model):
    """The audit trail: who (person, run or the system) changed which memory, when, and how.

    It outlives the memory: `memory` goes NULL on delete while `memory_ref`, the scope and
    `changes` (a snapshot for deletions) stay.
    """

    memory = models.ForeignKey(
        Memory, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    memory_ref = models.BigIntegerField()
    agent_id = models.BigIntegerField()
    user_key = models.CharField(max_length=200, blank=True, default="")
    action = models.CharField(max_length=12, choices=MemoryAction.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=200, blank=True, default="")
    run_id = models.UUIDField(null=True, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["agent_id", "-created_at"]),
            models.Index(fields=["memory_ref", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.memory_ref} by {self.actor_label}"
