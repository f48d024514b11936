"""The knowledge API (agentops/api_knowledge.py): bases, uploads, web sources through the egress
guard, the retrieval test; clear 4xx naming the field; in the OpenAPI schema."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from knowledge.models import Chunk, KnowledgeBase, Source, SourceKind, SourceStatus
from knowledge.services import source_ingest
from tests.kit import bearer
from tests.knowledge.docs import ANSWER, QUESTION, html_bytes, markdown_bytes, pdf_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(alice: Any) -> dict[str, str]:
    return bearer(alice)


def upload(client: Client, base: KnowledgeBase, name: str, data: bytes, auth: dict, **form: str):  # type: ignore[no-untyped-def]
    return client.post(
        f"/api/knowledge/bases/{base.pk}/files",
        {"file": SimpleUploadedFile(name, data), **form},
        **auth,
    )


def test_the_schema_describes_the_knowledge_api(client, admin):  # type: ignore[no-untyped-def]
    paths = client.get("/api/openapi.json", **admin).json()["paths"]
    for path in (
        "/api/knowledge/bases",
        "/api/knowledge/bases/{base_id}/files",
        "/api/knowledge/bases/{base_id}/urls",
        "/api/knowledge/sources/{source_id}/reindex",
        "/api/knowledge/sources/{source_id}/chunks",
        "/api/knowledge/search",
    ):
        assert path in paths, path


def test_an_admin_builds_a_base_and_an_operator_searches_it(client, admin, bob):  # type: ignore[no-untyped-def]
    made = client.post(
        "/api/knowledge/bases",
        {"name": "Help centre", "chunk_tokens": 200},
        content_type="application/json",
        **admin,
    )
    assert made.status_code == 201, made.content
    base = KnowledgeBase.objects.get(pk=made.json()["id"])
    again = client.post(
        "/api/knowledge/bases", {"name": "Help centre"}, content_type="application/json", **admin
    )
    assert again.status_code == 409 and again.json()["field"] == "slug"

    sent = upload(client, base, "handbook.pdf", pdf_bytes(), admin, visibility="end_users")
    assert sent.status_code == 202, sent.content
    source = sent.json()
    assert source["status"] == "queued" and source["added_by"] == "alice"
    source_ingest(source_id=source["id"])

    operator = bearer(bob)
    got = client.get(f"/api/knowledge/sources/{source['id']}", **operator).json()
    assert got["status"] == "ready" and got["chunk_count"] >= 2
    assert got["progress"]["chunks_done"] == got["chunk_count"]
    chunks = client.get(f"/api/knowledge/sources/{source['id']}/chunks", **operator).json()
    assert [c["ordinal"] for c in chunks] == sorted(c["ordinal"] for c in chunks)

    hits = client.post(
        "/api/knowledge/search",
        {"query": QUESTION, "bases": [base.pk], "k": 3},
        content_type="application/json",
        **operator,
    ).json()
    assert "45 days" in hits[0]["text"] and hits[0]["fused_rank"] == 1
    assert {"vector_rank", "vector_score", "text_rank", "text_score"} <= set(hits[0])

    refused = upload(client, base, "x.md", b"# x", operator)
    assert refused.status_code == 403


def test_uploads_are_refused_naming_the_file(client, admin, settings):  # type: ignore[no-untyped-def]
    base = KnowledgeBase.objects.create(name="B", slug="b")
    corrupt = upload(client, base, "broken.pdf", b"%PDF-1.4\n1 0 obj <<>> garbage", admin)
    assert corrupt.status_code == 422 and corrupt.json()["field"] == "file"
    assert "PDF cannot be read" in corrupt.json()["error"]

    unsupported = upload(client, base, "setup.exe", b"MZ\x90\x00binary", admin)
    assert unsupported.status_code == 415 and unsupported.json()["field"] == "file"
    assert ".exe is not a supported type" in unsupported.json()["error"]

    no_boundary = client.post(
        f"/api/knowledge/bases/{base.pk}/files",
        data=b"--x\r\n",
        content_type="multipart/form-data",
        **admin,
    )
    assert no_boundary.status_code == 400 and no_boundary.json()["field"] == "file"

    settings.KNOWLEDGE_UPLOAD_MAX_BYTES = 1000
    large = upload(client, base, "big.txt", b"word " * 400, admin)
    assert large.status_code == 413 and large.json()["field"] == "file"
    assert "over the limit of 1000 bytes" in large.json()["error"]
    assert not Source.objects.exists()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8000/admin", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://10.0.0.5/wiki", "private"),
        ("file:///etc/passwd", "http:// or https://"),
        ("http://[::1/x", "is not a valid URL"),
        ("http://example.com:99999/", "is not a valid URL"),
    ],
)
def test_a_web_source_at_an_internal_address_is_refused(client, admin, url, reason):  # type: ignore[no-untyped-def]
    base = KnowledgeBase.objects.create(name="B", slug="b")
    refused = client.post(
        f"/api/knowledge/bases/{base.pk}/urls",
        {"url": url},
        content_type="application/json",
        **admin,
    )
    assert refused.status_code == 422, refused.content
    assert refused.json()["field"] == "url" and reason in refused.json()["error"]
    assert not Source.objects.exists()


def test_the_fetch_itself_goes_through_the_egress_guard(db):  # type: ignore[no-untyped-def]
    """A source whose address turned internal after it was added (DNS changed): the crawl is
    refused by the guard and the source fails in plain words."""
    base = KnowledgeBase.objects.create(name="B", slug="b")
    source = Source.objects.create(base=base, kind=SourceKind.URL, url="http://127.0.0.1:9/page")
    source_ingest(source_id=source.pk)
    source.refresh_from_db()
    assert source.status == SourceStatus.FAILED
    assert "loopback" in source.last_error and not Chunk.objects.exists()


@pytest.fixture
def site() -> Iterator[str]:
    pages = {
        "/help": ("text/html", html_bytes()),
        "/faq.md": ("text/markdown", markdown_bytes([("Opening hours", "We open at nine.")])),
        "/moved": ("redirect", b"/help"),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/sitemap.xml":
                host = f"http://{self.headers['Host']}"
                body = (
                    '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                    f"<url><loc>{host}/moved</loc></url><url><loc>{host}/faq.md</loc></url></urlset>"
                ).encode()
                kind = "application/xml"
            elif self.path in pages:
                kind, body = pages[self.path]
            else:
                self.send_response(404)
                self.end_headers()
                return
            if kind == "redirect":
                self.send_response(302)
                self.send_header("Location", body.decode())
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_sitemap_is_crawled_page_by_page_when_allowlisted(client, admin, settings, site):  # type: ignore[no-untyped-def]
    settings.TOOL_EGRESS_ALLOWLIST = ["127.0.0.1/32"]
    base = KnowledgeBase.objects.create(name="B", slug="b")
    made = client.post(
        f"/api/knowledge/bases/{base.pk}/urls",
        {"url": f"{site}/sitemap.xml", "kind": "sitemap", "recrawl_hours": 24},
        content_type="application/json",
        **admin,
    )
    assert made.status_code == 202, made.content
    source_ingest(source_id=made.json()["id"])
    source = Source.objects.get(pk=made.json()["id"])
    assert source.status == SourceStatus.READY, source.last_error
    assert source.progress["pages_done"] == source.progress["pages_total"] == 2
    assert source.next_crawl_at is not None
    urls = {c.metadata["url"] for c in Chunk.objects.filter(source=source)}
    assert urls == {f"{site}/help", f"{site}/faq.md"}  # the redirect followed, through the guard
    answer = Chunk.objects.get(source=source, text__contains="45 days")
    assert answer.metadata["url"] == f"{site}/help" and ANSWER in answer.text


def test_deleting_through_the_api_removes_every_chunk(client, admin):  # type: ignore[no-untyped-def]
    base = KnowledgeBase.objects.create(name="B", slug="b")
    sent = upload(client, base, "faq.md", markdown_bytes([("Returns", ANSWER)]), admin).json()
    source_ingest(source_id=sent["id"])
    assert Chunk.objects.filter(source_id=sent["id"]).exists()
    assert client.delete(f"/api/knowledge/sources/{sent['id']}", **admin).status_code == 204
    assert not Chunk.objects.exists()
    assert client.get(f"/api/knowledge/sources/{sent['id']}", **admin).status_code == 404
    assert client.delete(f"/api/knowledge/bases/{base.pk}", **admin).status_code == 204
