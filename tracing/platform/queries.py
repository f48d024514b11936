"""Query helpers shared by the selectors of every feature."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import QuerySet

QS = TypeVar("QS", bound=QuerySet[Any])


def filter_given(qs: QS, **lookups: object) -> QS:
    """`qs` narrowed by each lookup whose value is given (truthy), one `filter` each, in the
    order passed; a lookup left empty (blank, None, 0) does not narrow it."""
    for lookup, value in lookups.items():
        if value:
            qs = qs.filter(**{lookup: value})
    return qs
