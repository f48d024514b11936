"""Text helpers shared by writes and reads: normalisation for duplicate detection."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_SPACE_RE = re.compile(r"\s+")
_NUMBER_RE = re.compile(r"\d+(?:[.,]\d+)*")


def normalise_text(text: str) -> str:
    """Case, width, spacing and trailing punctuation do not make a different memory."""
    value = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE_RE.sub(" ", value).strip().rstrip(".!;, ")


def content_hash(text: str) -> str:
    return hashlib.sha256(normalise_text(text).encode()).hexdigest()


def numbers_in(text: str) -> list[str]:
    """The numbers a text states, in order. Embeddings barely see them ("12 Baker Street"
    and "14 Baker Street" are 0.96 similar with wordllama), so near-duplicate merging
    requires them to be equal."""
    return _NUMBER_RE.findall(unicodedata.normalize("NFKC", text))
