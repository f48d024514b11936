"""RQ entry points of the memory app (queue "maintenance")."""

from __future__ import annotations

from memory.services import memory_embed, memory_expire


def memory_embed_job(memory_ids: list[int]) -> int:
    """Embed memories a person wrote or edited on the memory pages."""
    return memory_embed(memory_ids=memory_ids)


def memory_expire_job() -> int:
    """Delete expired memories (for the scheduler, every few minutes)."""
    return memory_expire()
