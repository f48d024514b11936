import json
from typing import Any

from django import template

register = template.Library()


@register.filter
def as_json(value: Any) -> str:
    """Pretty JSON text (escaped by the template like any other text)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
