"""Counting tokens as OpenAI's models do (o200k, offline through bpe-openai): the one count
the runtime's context budget and the knowledge app's chunk sizes share."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bpe_openai.tokenizer import Encoding


@cache
def token_encoding() -> Encoding:
    import bpe_openai

    return bpe_openai.get_encoding("o200k_base")


def count_tokens(text: str) -> int:
    # Ordinary: a text that spells a special token ("<|endoftext|>") is counted as the text it
    # is. `encode` refuses it (a ValueError: a user's message, a tool's output, a server error).
    return len(token_encoding().encode_ordinary(text)) if text else 0
