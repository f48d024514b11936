"""Web sources: pages and sitemaps fetched through the egress guard (tracing.platform.egress),
each redirect hop checked again, bodies capped at the upload limit."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from knowledge import conf
from tracing.platform.egress import EgressDenied, egress_resolve, guarded_client
from tracing.platform.errors import Invalid

MAX_REDIRECTS = 5
USER_AGENT = "AgentOps-knowledge/1.0"


class FetchFailed(Exception):
    """A page could not be fetched; the message is for the source's `last_error`."""


@dataclass(frozen=True)
class Page:
    url: str
    media_type: str
    body: bytes


def url_check(url: str, *, field: str = "url") -> str:
    """An http(s) URL whose host the egress guard lets through, or a 422 naming `field`."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise Invalid(f"is not a valid URL: {exc}", field=field) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or "\x00" in url:
        raise Invalid("must be an http:// or https:// URL with a host", field=field)
    try:
        egress_resolve(parts.hostname, port)
    except EgressDenied as exc:
        raise Invalid(str(exc), field=field) from exc
    return url


def page_fetch(url: str) -> Page:
    """GET `url`, following up to five redirects (each hop through the guard)."""
    limit = conf.upload_max_bytes()
    try:
        with guarded_client(timeout=conf.fetch_timeout_seconds()) as client:
            for _ in range(MAX_REDIRECTS + 1):
                with client.stream("GET", url, headers={"User-Agent": USER_AGENT}) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if not response.is_success:
                        raise FetchFailed(f"{url} answered HTTP {response.status_code}")
                    body = bytearray()
                    for piece in response.iter_bytes():
                        body += piece
                        if len(body) > limit:
                            raise FetchFailed(f"{url} is larger than the limit of {limit} bytes")
                    media_type = response.headers.get("content-type", "").split(";")[0].strip()
                    return Page(url=url, media_type=media_type, body=bytes(body))
    except EgressDenied as exc:
        raise FetchFailed(str(exc)) from exc
    except httpx.HTTPError as exc:
        raise FetchFailed(f"{url} could not be fetched: {type(exc).__name__}: {exc}") from exc
    raise FetchFailed(f"{url} redirected more than {MAX_REDIRECTS} times")


def sitemap_urls(body: bytes, *, limit: int) -> tuple[list[str], list[str]]:
    """(page URLs, nested sitemap URLs) a sitemap lists, at most `limit` pages."""
    from lxml import etree

    try:
        root = etree.fromstring(
            body, parser=etree.XMLParser(resolve_entities=False, no_network=True)
        )
    except etree.XMLSyntaxError as exc:
        raise FetchFailed(f"the sitemap is not valid XML: {exc}") from exc
    locations = [
        (
            element.getparent().tag if element.getparent() is not None else "",
            (element.text or "").strip(),
        )
        for element in root.iter("{*}loc")
    ]
    pages = [loc for parent, loc in locations if str(parent).endswith("url") and loc]
    nested = [loc for parent, loc in locations if str(parent).endswith("sitemap") and loc]
    return pages[:limit], nested


def sitemap_page_urls(url: str) -> list[str]:
    """The page URLs a sitemap (or a sitemap index, one level down) lists, at most the limit."""
    limit = conf.sitemap_max_pages()
    pages, nested = sitemap_urls(page_fetch(url).body, limit=limit)
    for child in nested:
        if len(pages) >= limit:
            break
        more, _ = sitemap_urls(page_fetch(child).body, limit=limit - len(pages))
        pages += more
    return pages
