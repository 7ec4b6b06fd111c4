"""Masking of personal data (ID numbers, names) for every log line, module result and report.

Confidentiality rule of the project: an 18-digit ID number or a person's name never leaves the
database unmasked. Everything that prints or stores text derived from person rows goes through here.
"""

from __future__ import annotations

import re

# 18-digit resident ID (GB 11643): 17 digits + digit or X; also 15-digit legacy IDs.
ID_RE = re.compile(r"(?<![0-9])([1-9][0-9]{2})[0-9]{11}([0-9]{3}[0-9Xx])(?![0-9A-Za-z])")
ID15_RE = re.compile(r"(?<![0-9])([1-9][0-9]{2})[0-9]{8}([0-9]{4})(?![0-9])")


def mask_id(value: str | None) -> str | None:
    """420***********1234: keep the first 3 and last 4 characters."""
    if value is None:
        return None
    v = str(value)
    if len(v) <= 7:
        return "*" * len(v)
    return v[:3] + "*" * (len(v) - 7) + v[-4:]


def mask_name(value: str | None) -> str | None:
    """张** : keep the family name (first character) only."""
    if value is None:
        return None
    v = str(value)
    if not v:
        return v
    return v[0] + "*" * max(1, len(v) - 1)


def mask_text(text: str) -> str:
    """Mask every ID number found in free text (log lines, error messages)."""
    text = ID_RE.sub(lambda m: m.group(1) + "*" * 11 + m.group(2), text)
    return ID15_RE.sub(lambda m: m.group(1) + "*" * 8 + m.group(2), text)
