"""String formats and patterns shared by the JSON Schemas and the pydantic models.

Both validators call the same functions here, so "is this a valid date-time / email / time zone"
has exactly one answer. JSON Schema `format` is only an annotation by default; `format_checker()`
turns on checking for exactly the formats our schemas use (and nothing else, so a format we do not
check can not look checked).
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable
from datetime import date, datetime
from functools import cache
from urllib.parse import urlsplit

from jsonschema import FormatChecker

# The same pattern strings appear in the JSON Schema files (tests assert each one is listed in
# PATTERN_MESSAGES, so every pattern failure gets a readable message).
NO_CONTROL_CHARS = r"^[^\x00-\x1F\x7F]*$"
PHONE_E164 = r"^\+[1-9][0-9]{6,14}$"
COUNTRY_ALPHA2 = r"^[A-Z]{2}$"
CURRENCY_ISO4217 = r"^[A-Z]{3}$"
DOMAIN = r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
TIMEZONE_NAME = r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$"
EXTENSION_NAME = r"^[a-z0-9]{1,20}$"

PATTERN_MESSAGES: dict[str, str] = {
    NO_CONTROL_CHARS: "must not contain control characters",
    PHONE_E164: "must be an E.164 phone number, e.g. +14155550123",
    COUNTRY_ALPHA2: "must be an ISO 3166-1 alpha-2 country code, e.g. DE",
    CURRENCY_ISO4217: "must be an ISO 4217 currency code, e.g. EUR",
    DOMAIN: "must be a domain name, e.g. example.com",
    TIMEZONE_NAME: "must be an IANA time zone name, e.g. Europe/Berlin",
    EXTENSION_NAME: "must be 1-20 lowercase letters or digits",
}

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    r"\.[A-Za-z]{2,63}"
)
_URI_REFERENCE = re.compile(r"[^\x00-\x20\x7F]+")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 date-time that has a timezone offset (or Z); raise ValueError otherwise."""
    if not _RFC3339.fullmatch(value):
        raise ValueError("not an RFC 3339 date-time with a timezone")
    normalized = value.upper()
    if normalized.endswith("Z"):
        normalized = normalized[:-1] + "+00:00"
    return datetime.fromisoformat(normalized)  # also rejects 2025-02-30, 25:00, +24:00


def parse_date(value: str) -> date:
    """Parse a full-date (YYYY-MM-DD); raise ValueError otherwise."""
    if not _DATE.fullmatch(value):
        raise ValueError("not a YYYY-MM-DD date")
    return date.fromisoformat(value)


def is_email(value: str) -> bool:
    """A practical check: ASCII local@domain.tld, at most 64 + 1 + 253 characters."""
    local, _, domain = value.partition("@")
    return len(local) <= 64 and len(domain) <= 253 and _EMAIL.fullmatch(value) is not None


def is_uri_reference(value: str) -> bool:
    """No whitespace or control characters, well-formed %-escapes, and parsable as a URI."""
    if not _URI_REFERENCE.fullmatch(value) or _BAD_PERCENT.search(value):
        return False
    try:
        urlsplit(value)
    except ValueError:  # e.g. an unbalanced "[" in the host
        return False
    return True


@cache
def _known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_iana_timezone(value: str) -> bool:
    """True if `value` names a zone in the host's IANA time zone database."""
    return value in _known_timezones()


def _is_rfc3339(value: str) -> bool:
    try:
        parse_rfc3339(value)
    except ValueError:
        return False
    return True


def _is_date(value: str) -> bool:
    try:
        parse_date(value)
    except ValueError:
        return False
    return True


_CHECKS: dict[str, Callable[[str], bool]] = {
    "date-time": _is_rfc3339,
    "date": _is_date,
    "email": is_email,
    "iana-timezone": is_iana_timezone,
    "uri-reference": is_uri_reference,
}

FORMAT_MESSAGES: dict[str, str] = {
    "date-time": "must be an RFC 3339 date-time with a timezone, e.g. 2025-03-14T09:26:53Z",
    "date": "must be a date in the form YYYY-MM-DD",
    "email": "must be an email address",
    "iana-timezone": "must be an IANA time zone name, e.g. Europe/Berlin",
    "uri-reference": "must be a URI reference without spaces, e.g. https://www.example.com",
}


def _only_strings(check: Callable[[str], bool]) -> Callable[[object], bool]:
    # Per JSON Schema, formats do not apply to non-strings (`type` reports those).
    def checker(instance: object) -> bool:
        return not isinstance(instance, str) or check(instance)

    return checker


@cache
def format_checker() -> FormatChecker:
    """A FormatChecker that checks exactly the formats used by Nurture's schemas."""
    checker = FormatChecker(formats=())
    for name, check in _CHECKS.items():
        checker.checks(name)(_only_strings(check))
    return checker
