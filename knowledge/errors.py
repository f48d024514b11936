"""The knowledge app's refusals: each names the input (`file`, `url`) it is about."""

from __future__ import annotations

from tracing.platform.errors import ApplicationError, Invalid


class UnsupportedFileType(ApplicationError):
    status = 415


class FileTooLarge(ApplicationError):
    status = 413


class UnreadableFile(Invalid):
    """The file claims a type it does not hold (a corrupt PDF, a DOCX that is no zip)."""
