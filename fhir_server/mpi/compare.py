"""Field comparisons: each returns a level (a short code) the scorer weighs (pure)."""

from __future__ import annotations

import datetime as dt

from rapidfuzz import fuzz
from rapidfuzz.distance import OSA, Hamming

from fhir_server.mpi.names import ParsedName

#: levels of :func:`compare_digits`
EXACT, ONE_DIGIT, TRANSPOSED, DIFFERENT = "exact", "one-digit", "transposed", "different"


def compare_digits(a: str, b: str) -> str:
    """Two digit strings (NIK, BPJS card): identical, one digit mistyped, two neighbours swapped, or different."""
    if a == b:
        return EXACT
    if len(a) == len(b):
        if Hamming.distance(a, b) == 1:
            return ONE_DIGIT
        if OSA.distance(a, b) == 1:
            return TRANSPOSED
    return DIFFERENT


def within_two(a: str, b: str) -> bool:
    """Two equally long digit strings at most two edits (substitutions or swaps) apart."""
    return len(a) == len(b) and OSA.distance(a, b) <= 2


#: levels of :func:`compare_dates`
DATE_EXACT, DATE_TYPO, DATE_PARTIAL, DATE_DIFFERENT = "exact", "typo", "partial", "different"


def compare_dates(a: str, b: str) -> str:
    """Birth dates: identical; a typo (one digit, two swapped digits, day and month swapped, one
    day apart); equal at the lower precision of two partial dates; or different."""
    if a == b:
        return DATE_EXACT
    if len(a) != 10 or len(b) != 10:
        n = min(len(a), len(b))
        return DATE_PARTIAL if a[:n] == b[:n] else DATE_DIFFERENT
    da, db = a.replace("-", ""), b.replace("-", "")
    if OSA.distance(da, db) <= 1:
        return DATE_TYPO
    if a[:4] == b[:4] and a[5:7] == b[8:10] and a[8:10] == b[5:7]:
        return DATE_TYPO
    try:
        days = abs((dt.date.fromisoformat(a) - dt.date.fromisoformat(b)).days)
    except ValueError:
        return DATE_DIFFERENT
    return DATE_TYPO if days <= 1 else DATE_DIFFERENT


def years_apart(a: str, b: str) -> int:
    """Whole years between two (possibly partial) dates, by their year parts."""
    try:
        return abs(int(a[:4]) - int(b[:4]))
    except ValueError:
        return 0


#: levels of :func:`compare_names`, strongest first
NAME_EXACT, NAME_SIMILAR, NAME_SUBSET, NAME_PARTIAL, NAME_DIFFERENT = "exact", "similar", "subset", "partial", "different"


def compare_names(a: ParsedName, b: ParsedName) -> tuple[str, float]:
    """Two normalised names, as token multisets in any order (Indonesians rarely have a family name
    to anchor on): the level and rapidfuzz's token-sort similarity (0..1)."""
    level, similarity = _compare_tokens(a.distinctive, b.distinctive)
    if level != NAME_EXACT and (a.distinctive != a.tokens or b.distinctive != b.tokens):
        # "Muhummad Hamid" / "Muhammad Hamid": a misspelt Muhammad is not recognised as one
        full = _compare_tokens(a.tokens, b.tokens)
        if _ORDER.index(full[0]) < _ORDER.index(level):
            return full
    return level, similarity


_ORDER = (NAME_EXACT, NAME_SIMILAR, NAME_SUBSET, NAME_PARTIAL, NAME_DIFFERENT)


def name_rank(level: str) -> int:
    """0 for the strongest level, higher for weaker ones."""
    return _ORDER.index(level)


def _compare_tokens(ta: tuple[str, ...], tb: tuple[str, ...]) -> tuple[str, float]:
    if sorted(ta) == sorted(tb):
        return NAME_EXACT, 1.0
    ja, jb = " ".join(sorted(ta)), " ".join(sorted(tb))
    similarity = fuzz.token_sort_ratio(ja, jb) / 100
    if similarity >= 0.9:
        return NAME_SIMILAR, similarity
    small, large = (set(ta), set(tb)) if len(ta) <= len(tb) else (set(tb), set(ta))
    if len(small) >= 2 and small <= large:
        return NAME_SUBSET, similarity
    if min(len(ta), len(tb)) >= 2 and fuzz.token_set_ratio(ja, jb) >= 92:
        return NAME_SUBSET, similarity
    if similarity >= 0.75 or (small and small <= large):
        return NAME_PARTIAL, similarity
    return NAME_DIFFERENT, similarity
