"""RQ entry points of the memory app (queue "maintenance")."""

from __future__ import annotations

from memory.services import memories_embed_missing, memory_embed, memory_expire


def memory_embed_job(memory_ids: list[int]) -> int:
    """Embed memories a person wrote or edited on the memory pages."""
    return memory_embed(memory_ids=memory_ids)


def memories_embed_missing_job() -> int:
    """Embed memories whose job Redis never got (for the scheduler, every minute)."""
    return memories_embed_missing()


def memory_expire_job() -> int:
    """Delete expired memories (for the scheduler, every few minutes)."""
    return memory_expire()
