from __future__ import annotations

import numpy as np
import pytest

from knowledge.models import KnowledgeBase
from knowledge.services import knowledge_base_create
from memory.embedders import Embedder, get_embedder


class CountingEmbedder:
    """The configured embedder, counting the texts it is asked to embed; `fail_after` makes
    it raise once that many calls were made (a worker dying mid-ingestion)."""

    def __init__(self, inner: Embedder | None = None, fail_after: int | None = None) -> None:
        self.inner = inner or get_embedder()
        self.name = self.inner.name
        self.dimensions = self.inner.dimensions
        self.calls = 0
        self.texts: list[str] = []
        self.fail_after = fail_after

    def embed(self, texts: list[str]) -> np.ndarray:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("the worker died")
        self.calls += 1
        self.texts += texts
        return self.inner.embed(texts)


@pytest.fixture
def counting() -> CountingEmbedder:
    return CountingEmbedder()


@pytest.fixture
def base(db: None) -> KnowledgeBase:
    return knowledge_base_create(name="Help centre", chunk_tokens=120, chunk_overlap=20)
