import json

from django import template

register = template.Library()


@register.filter
def as_json(value: object) -> str:
    """Pretty JSON text (escaped by the template like any other text)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
