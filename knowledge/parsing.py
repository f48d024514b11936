"""Files and pages to blocks: headings, paragraphs and tables in reading order, each with the
path of headings above it. Maintained parsers do the reading (pypdf, python-docx,
BeautifulSoup on lxml); this module only walks what they give.

`format_detect` names the format from the file name and declared type; `file_check` is the
cheap look at upload (a corrupt PDF is refused there, 4xx naming `file`); `blocks_parse`
does the full reading in the ingestion job.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from knowledge.errors import UnreadableFile, UnsupportedFileType

FORMATS = ("pdf", "docx", "html", "markdown", "text", "csv")
_EXTENSIONS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".csv": "csv",
}
_MEDIA_TYPES = {
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/plain": "text",
    "text/csv": "csv",
}


@dataclass
class Block:
    kind: str  # "heading", "paragraph" or "table"
    text: str
    headings: tuple[str, ...] = ()
    level: int = 0  # a heading's level (1 = top)
    metadata: dict[str, Any] = field(default_factory=dict)


def format_detect(*, filename: str = "", media_type: str = "") -> str:
    """The format a file holds, by its extension, or its declared media type if it has none.
    Refuses (415, naming `file`) what no parser here reads."""
    suffix = PurePosixPath(filename.lower()).suffix
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    # A name's own extension outweighs a declared type (clients send "text/plain" for anything).
    found = None if suffix else _MEDIA_TYPES.get(media_type.split(";")[0].strip().lower())
    if found:
        return found
    shown = suffix or media_type or "this file"
    raise UnsupportedFileType(
        f"{shown} is not a supported type: upload PDF, DOCX, HTML, Markdown, plain text or CSV",
        field="file",
    )


def web_format(*, url: str, media_type: str) -> str:
    """The format of a fetched page: its declared type if a parser reads it, else its URL's
    extension, else HTML for an undeclared one; refused (415, naming `url`) otherwise."""
    declared = media_type.split(";")[0].strip().lower()
    if declared in _MEDIA_TYPES:
        return _MEDIA_TYPES[declared]
    suffix = PurePosixPath(urlsplit(url).path.lower()).suffix
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    if not declared:
        return "html"
    raise UnsupportedFileType(f"{url} is {declared}, which no parser here reads", field="url")


def text_decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def file_check(*, data: bytes, fmt: str) -> None:
    """Refuse a file that is not what it claims (422 naming `file`), before it is queued."""
    if not data.strip():
        raise UnreadableFile("the file is empty", field="file")
    if fmt == "pdf":
        import pypdf
        from pypdf.errors import PyPdfError

        try:
            pages = len(pypdf.PdfReader(io.BytesIO(data)).pages)
        except (PyPdfError, ValueError, KeyError, TypeError) as exc:
            raise UnreadableFile(f"the PDF cannot be read (corrupt?): {exc}", field="file") from exc
        if pages == 0:
            raise UnreadableFile("the PDF has no pages", field="file")
    elif fmt == "docx":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                archive.getinfo("word/document.xml")
        except (zipfile.BadZipFile, KeyError) as exc:
            raise UnreadableFile(
                "the DOCX cannot be read: it is not a Word document", field="file"
            ) from exc
    elif b"\x00" in data[:4096]:
        raise UnreadableFile(f"the file is binary, not {fmt} text", field="file")


def blocks_parse(*, data: bytes, fmt: str) -> list[Block]:
    """Every block of the file in reading order, with its heading path."""
    if fmt not in FORMATS:
        raise UnsupportedFileType(f"{fmt} is not a supported type", field="file")
    try:
        if fmt == "pdf":
            raw = list(_pdf_blocks(data))
        elif fmt == "docx":
            raw = list(_docx_blocks(data))
        elif fmt == "html":
            raw = list(html_blocks(text_decode(data)))
        elif fmt == "markdown":
            raw = list(_markdown_blocks(text_decode(data)))
        elif fmt == "csv":
            raw = list(_csv_blocks(text_decode(data)))
        else:
            raw = [Block("paragraph", p) for p in _paragraphs(text_decode(data))]
    except (UnreadableFile, UnsupportedFileType):
        raise
    except Exception as exc:  # a parser's own error on a malformed file, whatever its kind
        raise UnreadableFile(
            f"the {fmt} file could not be read: {type(exc).__name__}: {exc}"[:500], field="file"
        ) from exc
    return _with_heading_paths(raw)


def _with_heading_paths(blocks: list[Block]) -> list[Block]:
    stack: list[tuple[int, str]] = []
    out = []
    for block in blocks:
        text = block.text.replace("\x00", "").strip()  # Postgres text holds no NUL
        if not text:
            continue
        if block.kind == "heading":
            while stack and stack[-1][0] >= block.level:
                stack.pop()
            stack.append((block.level, _one_line(text)))
        out.append(
            Block(
                block.kind,
                text,
                tuple(title for _, title in stack),
                block.level,
                block.metadata,
            )
        )
    return out


_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n")


_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([.,;:!?)])")


def _one_line(text: str) -> str:
    text = _SPACES.sub(" ", text.replace("\n", " ")).strip()
    return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text)


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in _BLANK_LINES.split(text.replace("\r\n", "\n")) if p.strip()]


def table_text(rows: list[list[str]]) -> str:
    """A table as Markdown rows (the header row first): what a model reads best."""
    rows = [[_one_line(cell).replace("|", "/") for cell in row] for row in rows if any(row)]
    if not rows:
        return ""
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * width]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


# -- PDF ------------------------------------------------------------------------------------
@dataclass
class _Line:
    y: float
    size: float
    parts: list[tuple[float, str]]

    @property
    def text(self) -> str:
        return _one_line(" ".join(text for _, text in sorted(self.parts)))

    @property
    def columns(self) -> list[str]:
        return [_one_line(text) for _, text in sorted(self.parts) if text.strip()]


def _pdf_blocks(data: bytes) -> Iterator[Block]:
    """PDF has no structure to read, only text placed on pages: lines are grouped by their
    height on the page, a line in a larger font than the body is a heading, lines with
    cells at several places across are a table, and a gap wider than a line starts a new
    paragraph. Each block carries its page number."""
    import pypdf
    from pypdf.errors import PyPdfError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        pages = [_pdf_lines(page) for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableFile(f"the PDF cannot be read (corrupt?): {exc}", field="file") from exc
    sizes: Counter[float] = Counter()
    for lines in pages:
        for line in lines:
            sizes[line.size] += len(line.text)
    body = sizes.most_common(1)[0][0] if sizes else 0.0
    heading_sizes = sorted({s for s in sizes if s >= body * 1.15}, reverse=True)
    for number, lines in enumerate(pages, 1):
        meta: dict[str, Any] = {"page": number}
        paragraph: list[str] = []
        table: list[list[str]] = []
        previous: _Line | None = None

        for line in lines:
            text = line.text
            if not text:
                continue
            if line.size in heading_sizes:
                yield from _pdf_flush(paragraph, table, meta)
                yield Block(
                    "heading", text, level=heading_sizes.index(line.size) + 1, metadata=meta
                )
            elif len(line.columns) >= 2 and _spread(line):
                if paragraph:
                    yield from _pdf_flush(paragraph, table, meta)
                table.append(line.columns)
            else:
                gap = (previous.y - line.y) if previous is not None else 0.0
                if table or (paragraph and gap > line.size * 1.8):
                    yield from _pdf_flush(paragraph, table, meta)
                paragraph.append(text)
            previous = line
        yield from _pdf_flush(paragraph, table, meta)


def _pdf_flush(
    paragraph: list[str], table: list[list[str]], meta: dict[str, Any]
) -> Iterator[Block]:
    if paragraph:
        yield Block("paragraph", " ".join(paragraph), metadata=meta)
        paragraph.clear()
    if table:
        yield Block("table", table_text(table), metadata=meta)
        table.clear()


def _spread(line: _Line) -> bool:
    """Cells set apart across the page (a table row), not words of one sentence."""
    xs = sorted(x for x, text in line.parts if text.strip())
    return any(b - a > line.size * 6 for a, b in itertools.pairwise(xs))


def _pdf_lines(page: Any) -> list[_Line]:
    fragments: list[tuple[float, float, float, str]] = []

    def visit(text: str, cm: list[float], tm: list[float], font: Any, size: float) -> None:
        if text.strip():
            scale = abs(tm[3] * cm[3]) or 1.0
            fragments.append((tm[5] + cm[5], tm[4] + cm[4], round(size * scale, 1), text))

    plain = page.extract_text(visitor_text=visit) or ""
    if fragments and all(y == fragments[0][0] for y, *_ in fragments) and "\n" in plain.strip():
        # No positions to go by (some producers): one line per extracted line.
        return [
            _Line(float(-i * 20), 10.0, [(0.0, line)]) for i, line in enumerate(plain.splitlines())
        ]
    lines: list[_Line] = []
    for y, x, size, text in fragments:
        for line in lines:
            if abs(line.y - y) < 1.0:
                line.parts.append((x, text))
                line.size = max(line.size, size)
                break
        else:
            lines.append(_Line(y, size, [(x, text)]))
    lines.sort(key=lambda line: -line.y)
    return lines


# -- DOCX -----------------------------------------------------------------------------------
_HEADING_STYLE = re.compile(r"^(?:heading|überschrift|titre)\s*(\d)", re.IGNORECASE)


def _docx_blocks(data: bytes) -> Iterator[Block]:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise UnreadableFile(f"the DOCX cannot be read: {exc}", field="file") from exc
    for item in document.iter_inner_content():
        if isinstance(item, Paragraph):
            style = item.style.name if item.style is not None else ""
            match = _HEADING_STYLE.match(style or "")
            if match:
                yield Block("heading", item.text, level=int(match.group(1)))
            elif (style or "").lower() == "title":
                yield Block("heading", item.text, level=1)
            else:
                yield Block("paragraph", item.text)
        elif isinstance(item, Table):
            rows = [[cell.text for cell in row.cells] for row in item.rows]
            yield Block("table", table_text(rows))


# -- HTML -----------------------------------------------------------------------------------
_BOILERPLATE = ("script", "style", "noscript", "nav", "header", "footer", "aside", "form", "svg")
_TEXT_TAGS = (
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "p",
    "li",
    "pre",
    "blockquote",
    "table",
    "dt",
    "dd",
)


def html_title(html: str) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "lxml")
    return _one_line(soup.title.get_text()) if soup.title else ""


def html_blocks(html: str) -> Iterator[Block]:
    """The page's main text: <main> or <article> when there is one, else <body>, without
    navigation, headers, footers, asides, forms and scripts."""
    from bs4 import BeautifulSoup, Tag

    soup = BeautifulSoup(html, "lxml")
    for tag in soup.find_all(_BOILERPLATE):
        tag.decompose()
    found = soup.find("main") or soup.find("article") or soup.body
    root: Tag = found if isinstance(found, Tag) else soup
    for element in root.find_all(_TEXT_TAGS):
        if element.find_parent(["table", "li", "blockquote", "pre"]) not in (None, root):
            continue  # read with its container
        name = element.name
        if name.startswith("h") and len(name) == 2:
            yield Block("heading", element.get_text(" "), level=int(name[1]))
        elif name == "table":
            rows = [
                [cell.get_text(" ") for cell in row.find_all(["th", "td"])]
                for row in element.find_all("tr")
            ]
            yield Block("table", table_text(rows))
        elif name == "pre":
            yield Block("paragraph", element.get_text())
        else:
            yield Block("paragraph", _one_line(element.get_text(" ")))


# -- Markdown, CSV --------------------------------------------------------------------------
_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_MD_RULE = re.compile(r"^\|?\s*:?-{3,}")


def _markdown_blocks(text: str) -> Iterator[Block]:
    paragraph: list[str] = []
    table: list[list[str]] = []
    fence: list[str] | None = None

    def flush() -> Iterator[Block]:
        if paragraph:
            yield Block("paragraph", "\n".join(paragraph))
            paragraph.clear()
        if table:
            yield Block("table", table_text(table))
            table.clear()

    for line in text.replace("\r\n", "\n").split("\n"):
        stripped = line.strip()
        if fence is not None:
            if stripped.startswith("```"):
                yield Block("paragraph", "\n".join(fence))
                fence = None
            else:
                fence.append(line)
            continue
        if stripped.startswith("```"):
            yield from flush()
            fence = []
            continue
        heading = _MD_HEADING.match(stripped)
        if heading:
            yield from flush()
            yield Block("heading", heading.group(2), level=len(heading.group(1)))
        elif stripped.startswith("|"):
            if paragraph:
                yield from flush()
            if not _MD_RULE.match(stripped.replace(" ", "")):
                table.append([cell.strip() for cell in stripped.strip("|").split("|")])
        elif not stripped:
            yield from flush()
        else:
            if table:
                yield from flush()
            paragraph.append(stripped)
    if fence:
        yield Block("paragraph", "\n".join(fence))
    yield from flush()


def _csv_blocks(text: str) -> Iterator[Block]:
    """Each row a block of "column: value" pairs, so a chunk of rows reads on its own."""
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    if not rows:
        return
    header = [_one_line(cell) for cell in rows[0]]
    for number, row in enumerate(rows[1:], 2):
        pairs = [
            f"{header[i] if i < len(header) and header[i] else f'column {i + 1}'}: {_one_line(value)}"
            for i, value in enumerate(row)
            if value.strip()
        ]
        if pairs:
            yield Block("paragraph", "; ".join(pairs), metadata={"row": number})
