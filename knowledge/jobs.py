"""RQ entry points of the knowledge app (queue "maintenance"); the work is in services."""

from __future__ import annotations

from knowledge.services import source_ingest, sources_recrawl_due, sources_resume


def source_ingest_job(source_id: int) -> str:
    result = source_ingest(source_id=source_id)
    return "skipped" if result.skipped else result.status


def sources_resume_job() -> int:
    """Queue again the ingestions a killed worker or an absent Redis lost (every minute)."""
    return sources_resume()


def sources_recrawl_due_job() -> int:
    """Queue the web sources whose re-crawl time came (every few minutes)."""
    return sources_recrawl_due()
