"""Blocks to chunks of about `chunk_tokens` tokens, following the document's structure: a
chunk never spans two sections (a heading starts a new one), a table stays whole when it
fits (a longer one is cut between rows, its header row repeated), a paragraph too long is
cut between sentences; a chunk that continues its section starts with the last sentences
of the one before, up to `overlap` tokens.

A chunk's hash covers its heading path and its text: the same words under another heading
are another chunk. `occurrence` tells apart equal chunks of one source.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from knowledge.parsing import Block
from tracing.platform.tokens import count_tokens, token_encoding

HEADING_SEPARATOR = " > "
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


@dataclass
class ChunkDraft:
    ordinal: int
    occurrence: int
    heading_path: str
    text: str
    token_count: int
    content_hash: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def embed_text(self) -> str:
        """What is embedded: the headings give the passage its context."""
        return f"{self.heading_path}\n\n{self.text}" if self.heading_path else self.text

    @property
    def key(self) -> tuple[str, int]:
        return self.content_hash, self.occurrence


@dataclass
class _Piece:
    text: str
    tokens: int
    kind: str
    metadata: dict[str, Any]


def chunk_hash(heading_path: str, text: str) -> str:
    return hashlib.sha256(f"{heading_path}\n{text}".encode()).hexdigest()


def chunks_make(blocks: list[Block], *, chunk_tokens: int, overlap: int) -> list[ChunkDraft]:
    chunk_tokens = max(chunk_tokens, 16)
    overlap = max(0, min(overlap, chunk_tokens // 2))
    drafts: list[ChunkDraft] = []
    seen: dict[str, int] = {}
    current: list[_Piece] = []
    current_path = ""
    current_tokens = 0

    def emit() -> None:
        nonlocal current_tokens
        if not current or all(p.kind == "overlap" for p in current):
            current.clear()
            current_tokens = 0
            return
        text = "\n\n".join(p.text for p in current)
        digest = chunk_hash(current_path, text)
        occurrence = seen.get(digest, 0)
        seen[digest] = occurrence + 1
        drafts.append(
            ChunkDraft(
                ordinal=len(drafts),
                occurrence=occurrence,
                heading_path=current_path,
                text=text,
                token_count=count_tokens(text),
                content_hash=digest,
                metadata=_merged_metadata([p.metadata for p in current]),
            )
        )
        current.clear()
        current_tokens = 0

    for block in blocks:
        path = HEADING_SEPARATOR.join(block.headings)
        if (
            block.kind == "heading"
            or path != current_path
            or _page_of(block) != _page_of_last(current)
        ):
            emit()
            current_path = path
            if block.kind == "heading":
                continue
        for piece in _pieces(block, chunk_tokens):
            if current and current_tokens + piece.tokens > chunk_tokens:
                tail = _overlap_tail(current[-1], overlap) if piece.kind != "table" else None
                emit()
                if tail is not None and tail.tokens + piece.tokens <= chunk_tokens:
                    current.append(tail)
                    current_tokens = tail.tokens
            current.append(piece)
            current_tokens += piece.tokens
    emit()
    return drafts


def _page_of(block: Block) -> object:
    """The web page a block came from (a sitemap's source holds many): never mixed in one chunk."""
    return block.metadata.get("url")


def _page_of_last(pieces: list[_Piece]) -> object:
    return pieces[-1].metadata.get("url") if pieces else None


def _merged_metadata(items: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    pages = sorted({m["page"] for m in items if "page" in m})
    rows = sorted({m["row"] for m in items if "row" in m})
    for m in items:
        for key, value in m.items():
            if key not in ("page", "row"):
                merged.setdefault(key, value)
    if pages:
        merged["page"] = pages[0]
        if len(pages) > 1:
            merged["pages"] = pages
    if rows:
        merged["rows"] = [rows[0], rows[-1]]
    return merged


def _pieces(block: Block, limit: int) -> list[_Piece]:
    tokens = count_tokens(block.text)
    if tokens <= limit:
        return [_Piece(block.text, tokens, block.kind, block.metadata)]
    if block.kind == "table":
        return _table_pieces(block, limit)
    pieces: list[_Piece] = []
    for sentence in _SENTENCE_END.split(block.text):
        sentence_tokens = count_tokens(sentence)
        if sentence_tokens > limit:
            pieces += _token_pieces(sentence, limit, block.metadata)
            continue
        last = pieces[-1] if pieces else None
        if last is not None and last.kind == "paragraph" and last.tokens + sentence_tokens < limit:
            last.text = f"{last.text} {sentence}"
            last.tokens = count_tokens(last.text)
        else:
            pieces.append(_Piece(sentence, sentence_tokens, "paragraph", block.metadata))
    return pieces


def _table_pieces(block: Block, limit: int) -> list[_Piece]:
    lines = block.text.split("\n")
    header, rows = lines[:2], lines[2:]
    header_tokens = count_tokens("\n".join(header))
    pieces: list[_Piece] = []
    group: list[str] = []
    group_tokens = header_tokens
    for row in rows:
        row_tokens = count_tokens(row) + 1
        if group and group_tokens + row_tokens > limit:
            text = "\n".join(header + group)
            pieces.append(_Piece(text, count_tokens(text), "table", block.metadata))
            group, group_tokens = [], header_tokens
        group.append(row)
        group_tokens += row_tokens
    if group:
        text = "\n".join(header + group)
        pieces.append(_Piece(text, count_tokens(text), "table", block.metadata))
    return pieces


def _token_pieces(text: str, limit: int, metadata: dict[str, Any]) -> list[_Piece]:
    encoding = token_encoding()
    tokens = encoding.encode_ordinary(text)
    return [
        _Piece(
            encoding.decode(tokens[i : i + limit]),
            len(tokens[i : i + limit]),
            "paragraph",
            metadata,
        )
        for i in range(0, len(tokens), limit)
    ]


def _overlap_tail(piece: _Piece, overlap: int) -> _Piece | None:
    """The last whole sentences of `piece`, up to `overlap` tokens (None: none fit)."""
    if overlap <= 0 or piece.kind != "paragraph":
        return None
    taken: list[str] = []
    tokens = 0
    for sentence in reversed(_SENTENCE_END.split(piece.text)):
        sentence_tokens = count_tokens(sentence)
        if tokens + sentence_tokens > overlap:
            break
        taken.insert(0, sentence)
        tokens += sentence_tokens
    if not taken or " ".join(taken) == piece.text:
        return None
    return _Piece(" ".join(taken), tokens, "overlap", piece.metadata)
