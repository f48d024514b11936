"""The snooze choices of the handoff page (`for` of its snooze form)."""

from __future__ import annotations

SNOOZE_CHOICES = [
    ("reply", "until the user writes"),
    ("1h", "for 1 hour"),
    ("4h", "for 4 hours"),
    ("1d", "until tomorrow (24 hours)"),
    ("3d", "for 3 days"),
]
SNOOZE_HOURS = {"1h": 1, "4h": 4, "1d": 24, "3d": 72}
