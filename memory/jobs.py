"""RQ entry points of the memory app (queue "maintenance")."""

from __future__ import annotations

from memory.services import memory_embed


def memory_embed_job(memory_ids: list[int]) -> int:
    """Embed memories a person wrote or edited on the memory pages."""
    return memory_embed(memory_ids=memory_ids)
