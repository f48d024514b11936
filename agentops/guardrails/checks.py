"""Finding what a guardrail looks for in a text. Candidates are found by pattern and then
validated by maintained libraries (`python-stdnum` for card numbers, IBANs and national ids,
`phonenumbers` for phone numbers), so a 16-digit order number that fails the Luhn check is
not a card number."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import phonenumbers
import regex
from stdnum import iban, luhn
from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.us import ssn

# A pattern is the admin's and a text the end user's or the model's: a pattern that
# backtracks for ever on one text trips its guardrail rather than holding the worker.
REGEX_TIMEOUT = 0.5

LABELS = {
    "card": "card number",
    "iban": "IBAN",
    "email": "e-mail address",
    "phone": "phone number",
    "national_id": "national id",
    "terms": "blocked term",
    "regex": "redacted",
}


@dataclass(frozen=True)
class Finding:
    start: int
    end: int
    entity: str  # a key of LABELS


class PatternTimeout(Exception):
    """A guardrail's pattern ran past REGEX_TIMEOUT on this text."""


_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# Candidates for each national id with the library module that validates them.
_NATIONAL_IDS: list[tuple[re.Pattern[str], Callable[[str], bool]]] = [
    (re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])"), ssn.is_valid),
    (re.compile(r"\b\d{8}-?[A-Z]\b"), dni.is_valid),
    (re.compile(r"\b[XYZ]-?\d{7}-?[A-Z]\b"), nie.is_valid),
    (re.compile(r"\b[A-Z]{6}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z]\b"), codicefiscale.is_valid),
    (re.compile(r"(?<!\d)[12](?: ?\d){12}(?: ?\d{2})?(?!\d)"), nir.is_valid),
    (re.compile(r"(?<!\d)\d{11}(?!\d)"), idnr.is_valid),
    (re.compile(r"(?<!\d)\d{9}(?!\d)"), bsn.is_valid),
]


def _pii(text: str, entities: list[str], region: str) -> list[Finding]:
    found: list[Finding] = []
    if "card" in entities:
        for m in _CARD.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
                found.append(Finding(m.start(), m.end(), "card"))
    if "iban" in entities:
        found += [
            Finding(m.start(), m.end(), "iban")
            for m in _IBAN.finditer(text)
            if iban.is_valid(m.group())
        ]
    if "email" in entities:
        found += [Finding(m.start(), m.end(), "email") for m in _EMAIL.finditer(text)]
    if "national_id" in entities:
        for pattern, is_valid in _NATIONAL_IDS:
            found += [
                Finding(m.start(), m.end(), "national_id")
                for m in pattern.finditer(text)
                if is_valid(m.group())
            ]
    if "phone" in entities:
        matcher = phonenumbers.PhoneNumberMatcher(
            text, region, leniency=phonenumbers.Leniency.VALID
        )
        found += [Finding(m.start, m.end, "phone") for m in matcher]
    return found


@functools.lru_cache(maxsize=256)
def _terms_pattern(terms: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def findings(guardrail: dict[str, Any], text: str) -> list[Finding]:
    """Where the text holds what a finder guardrail (terms, regex, pii) looks for, without
    overlaps, in order."""
    kind = guardrail["kind"]
    if kind == "terms":
        found = [
            Finding(m.start(), m.end(), "terms")
            for m in _terms_pattern(tuple(guardrail["terms"])).finditer(text)
        ]
    elif kind == "regex":
        found = []
        try:
            for pattern in guardrail["patterns"]:
                found += [
                    Finding(m.start(), m.end(), "regex")
                    for m in regex.finditer(pattern, text, timeout=REGEX_TIMEOUT, concurrent=True)
                    if m.end() > m.start()
                ]
        except TimeoutError:
            raise PatternTimeout(f"a pattern ran over {REGEX_TIMEOUT:g} s") from None
    else:
        found = _pii(text, guardrail["entities"], guardrail["region"])
    kept: list[Finding] = []
    for finding in sorted(found, key=lambda f: (f.start, -f.end)):
        if kept and finding.start < kept[-1].end:
            continue  # inside (or across) one already found
        kept.append(finding)
    return kept


def redact(text: str, found: list[Finding]) -> str:
    """The text with each finding replaced by its label: "[card number]"."""
    out, at = [], 0
    for finding in found:
        out += [text[at : finding.start], f"[{LABELS[finding.entity]}]"]
        at = finding.end
    out.append(text[at:])
    return "".join(out)
