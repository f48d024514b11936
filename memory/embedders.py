"""Embedders turn texts into unit-length 256-d vectors (the column size is fixed).

Chosen by the MEMORY_EMBEDDER setting:
- "wordllama" (default): offline, no network and no PyTorch, about 40 µs per short text.
- "openai": any OpenAI-compatible /v1/embeddings endpoint through the official client,
  asking for `dimensions=256`.

Each memory row stores the embedder's `name`; recall only compares vectors of the current
embedder, and `manage.py reembed_memories` brings the rest over after a change.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Protocol

import numpy as np
from django.conf import settings
from numpy.typing import ArrayLike

from memory.models import EMBEDDING_DIMENSIONS
from tracing.platform.failures import Failure, FailureClass

BATCH_SIZE = 256


def vector_text(embedding: ArrayLike) -> str:
    """pgvector's text form; 7 significant digits keep float32 precision and parse fast."""
    values = np.asarray(embedding, dtype=np.float32).tolist()
    return "[" + ",".join(map("{:.7g}".format, values)) + "]"


class Embedder(Protocol):
    name: str
    dimensions: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """One float32 row per text, L2-normalised, in the order given."""
        ...


def _normalise(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


class WordLlamaEmbedder:
    config = "l2_supercat"

    def __init__(self, cache_dir: Path) -> None:
        import wordllama
        from wordllama import WordLlama

        # The loader looks for the tokenizer under <cache_dir>/tokenizers/ and would otherwise
        # try to download it; the wheel carries it, so copy it there once.
        packaged = Path(wordllama.__file__).parent / "tokenizers"
        target = cache_dir / "tokenizers"
        target.mkdir(parents=True, exist_ok=True)
        for source in packaged.glob("*.json"):
            if not (target / source.name).exists():
                shutil.copyfile(source, target / source.name)
        self.model = WordLlama.load(
            config=self.config, dim=EMBEDDING_DIMENSIONS, cache_dir=cache_dir, disable_download=True
        )
        self.name = f"wordllama/{self.config}_{EMBEDDING_DIMENSIONS}"
        self.dimensions = EMBEDDING_DIMENSIONS

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return _normalise(self.model.embed(texts, norm=False, batch_size=BATCH_SIZE))


class OpenAIEmbedder:
    def __init__(
        self, *, base_url: str, api_key: str, model: str, timeout: float = 30, max_retries: int = 2
    ) -> None:
        import openai

        self.client = openai.OpenAI(
            base_url=base_url or None,
            # Local servers (vLLM, Ollama, the dev model) ignore the key but the client needs one.
            api_key=api_key or "unused",
            timeout=timeout,
            max_retries=max_retries,
        )
        self.model = model
        self.name = f"openai/{model}"
        self.dimensions = EMBEDDING_DIMENSIONS

    def embed(self, texts: list[str]) -> np.ndarray:
        rows: list[list[float]] = []
        for start in range(0, len(texts), BATCH_SIZE):
            batch = texts[start : start + BATCH_SIZE]
            response = self._call(batch)
            data = sorted(response.data, key=lambda item: item.index)
            if len(data) != len(batch) or any(len(d.embedding) != self.dimensions for d in data):
                raise Failure(
                    FailureClass.BAD_RESPONSE,
                    f"The embedding endpoint returned {len(data)} vectors for {len(batch)} texts "
                    f"or a size other than {self.dimensions}; it must honour `dimensions`.",
                )
            rows.extend(d.embedding for d in data)
        if not rows:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return _normalise(np.array(rows))

    def _call(self, batch: list[str]):  # type: ignore[no-untyped-def]
        import openai

        try:
            return self.client.embeddings.create(
                model=self.model, input=batch, dimensions=self.dimensions, encoding_format="float"
            )
        except openai.APIStatusError as exc:
            raise Failure(
                _status_class(exc.status_code),
                f"The embedding endpoint answered {exc.status_code}: {_short(exc)}",
                status_code=exc.status_code,
            ) from exc
        except openai.APITimeoutError as exc:
            raise Failure(FailureClass.TIMEOUT, "The embedding endpoint timed out.") from exc
        except openai.APIConnectionError as exc:
            raise Failure(
                FailureClass.CONNECTION,
                "The embedding endpoint could not be reached.",
                may_have_reached_server=False,
            ) from exc


def _status_class(status: int) -> FailureClass:
    if status == 429:
        return FailureClass.RATE_LIMIT
    if status in (401, 403):
        return FailureClass.AUTH
    if status >= 500:
        return FailureClass.SERVER_ERROR
    return FailureClass.INVALID_REQUEST


def _short(exc: Exception) -> str:
    message = getattr(exc, "message", "") or str(exc)
    return message[:300]


_lock = threading.Lock()
_cache: dict[tuple[str, ...], Embedder] = {}


def get_embedder() -> Embedder:
    """The embedder the settings name, built once per process."""
    kind = settings.MEMORY_EMBEDDER
    if kind == "openai":
        key: tuple[str, ...] = (
            kind,
            settings.MEMORY_EMBEDDING_BASE_URL,
            settings.MEMORY_EMBEDDING_MODEL,
            settings.MEMORY_EMBEDDING_API_KEY,
        )
    else:
        key = (kind, str(settings.VAR_DIR))
    with _lock:
        embedder = _cache.get(key)
        if embedder is None:
            if kind == "openai":
                embedder = OpenAIEmbedder(
                    base_url=settings.MEMORY_EMBEDDING_BASE_URL,
                    api_key=settings.MEMORY_EMBEDDING_API_KEY,
                    model=settings.MEMORY_EMBEDDING_MODEL,
                )
            elif kind == "wordllama":
                embedder = WordLlamaEmbedder(Path(settings.VAR_DIR) / "cache" / "wordllama")
            else:
                raise ValueError(f"Unknown MEMORY_EMBEDDER {kind!r}.")
            _cache[key] = embedder
        return embedder
