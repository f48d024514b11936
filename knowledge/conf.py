"""Settings of the knowledge app, read from Django settings (agentops/settings.py reads the
environment); the defaults serve a project that sets none of them. No value is parsed here."""

from __future__ import annotations

from django.conf import settings


def upload_max_bytes() -> int:
    """The largest file a source may be uploaded from (and the largest page fetched)."""
    return int(getattr(settings, "KNOWLEDGE_UPLOAD_MAX_BYTES", 20 * 1024 * 1024))


def fetch_timeout_seconds() -> float:
    return float(getattr(settings, "KNOWLEDGE_FETCH_TIMEOUT", 20.0))


def sitemap_max_pages() -> int:
    """Pages of a sitemap ingested into its source, at most."""
    return int(getattr(settings, "KNOWLEDGE_SITEMAP_MAX_PAGES", 200))


def embed_batch_size() -> int:
    """Chunks embedded and written per batch (a killed job loses at most one batch). Small:
    the offline embedder pads a batch to its longest text."""
    return int(getattr(settings, "KNOWLEDGE_EMBED_BATCH", 32))
