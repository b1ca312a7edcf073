"""The ``$expand`` text filter: case-insensitive word-prefix matching over displays.

Every whitespace-separated term of the filter must start a word of the display
("pangal" matches "Pangalengan", "kota dep" matches "Kota Depok", "sari" does not
match "Warnasari"). Punctuation separates words; apostrophes are dropped, so
"marang" matches "Ma'rang". This is what HAPI and Ontoserver do, and it keeps
filtering a linear scan of precomputed normalised strings (see regions.py).
"""

from __future__ import annotations

import re
import unicodedata

_APOSTROPHES = re.compile(r"['`\u2019]")
_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalize(text: str) -> str:
    """Lower-case ASCII words separated by single spaces, with a leading space (so ``" term" in s`` is word-prefix)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    folded = _APOSTROPHES.sub("", folded)
    return " " + _NON_WORD.sub(" ", folded).strip()


def terms(filter_text: str | None) -> list[str]:
    """The needles of a filter: each term with a leading space, ready for ``needle in normalize(display)``."""
    if not filter_text:
        return []
    return [" " + t for t in normalize(filter_text).split()]


def matches(needles: list[str], normalized_display: str) -> bool:
    return all(n in normalized_display for n in needles)
