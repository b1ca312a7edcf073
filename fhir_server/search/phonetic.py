"""``phonetic``: a name "using some kind of phonetic matching algorithm" (R4 individual-phonetic,
on Patient, Person, Practitioner and RelatedPerson).

The algorithm is the master patient index's, made for Indonesian names (fhir_server/mpi): a name
is reduced to its tokens in today's spelling with one form for each common name (``Soeharto`` ->
suharto, ``Njoman`` -> nyoman, ``Moch.`` -> muhammad; titles and degrees dropped), and each token to
a coarse sound key (``Rizki``, ``Rizky`` and ``Risky`` share one). Every name of a resource is
indexed as its tokens' keys (``idx_token`` rows, code = the key). A search value matches a resource
that has the keys of all of the value's tokens, in any of its names and in any order:
``Patient?phonetic=Muhammad Rizky`` finds ``Moch. Rizki``.
"""

from __future__ import annotations

from typing import Any

from fhir_server.mpi.blocking import sound_key
from fhir_server.mpi.names import parse_name

#: how many tokens of one search value count (a longer value is no name)
MAX_TOKENS = 8


def phonetic_keys(text: str) -> list[str]:
    """The sound keys of ``text``'s name tokens, in order, each once."""
    parsed = parse_name(text)
    return list(dict.fromkeys(k for k in (sound_key(t) for t in (*parsed.tokens, *parsed.father)) if k))


def search_keys(value: str) -> list[str]:
    """The keys a search value must all match (at most ``MAX_TOKENS``)."""
    return phonetic_keys(value)[:MAX_TOKENS]


def _written(name: dict[str, Any]) -> str:
    """A HumanName as written: its text, else its given names and family."""
    text = name.get("text")
    if isinstance(text, str) and text.strip():
        return text
    given = name.get("given")
    parts = [g for g in given if isinstance(g, str)] if isinstance(given, list) else []
    family = name.get("family")
    if isinstance(family, str):
        parts.append(family)
    return " ".join(parts)


def phonetic_rows(code: str, values: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """The token rows of the names ``values`` (HumanNames): one per sound key."""
    keys: dict[str, None] = {}
    for _, name in values:
        if isinstance(name, dict):
            keys.update(dict.fromkeys(phonetic_keys(_written(name))))
    return [{"param": code, "system": None, "code": key, "text": None} for key in keys]
