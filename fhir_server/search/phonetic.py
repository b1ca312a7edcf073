"""``phonetic``: a name "using some kind of phonetic matching algorithm" (R4 individual-phonetic,
on Patient, Person, Practitioner and RelatedPerson).

The algorithm is the master patient index's, made for Indonesian names (fhir_server/mpi): a name
is reduced to its tokens in today's spelling with one form for each common name (``Soeharto`` ->
suharto, ``Njoman`` -> nyoman, ``Moch.`` -> muhammad; titles and degrees dropped), and each token to
a coarse sound key (``Rizki``, ``Rizky`` and ``Risky`` share one). Every name of a resource is
indexed as its tokens' keys (``idx_token`` rows, code = the key). A search value matches a resource
that has the keys of all of the value's tokens, in any of its names and in any order:
``Patient?phonetic=Muhammad Rizky`` finds ``Moch. Rizki``.

Every pair of a resource's keys is indexed too (code ``"<key> <key>"``, the two in order): a value
of two tokens is then one look-up, and one of more tokens a look-up per pair of them. The names
Indonesians search by are few and common (``Budi`` and ``Santoso`` each in thousands of Patients);
the keys one by one had to be intersected, which read thousands of rows and more as the database
grew, where the pair reads only its matches.
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


def pair_key(a: str, b: str) -> str:
    """The indexed key of two keys of one resource (a space never occurs in a key)."""
    return f"{a} {b}" if a <= b else f"{b} {a}"


def lookup_keys(value: str) -> list[str]:
    """The indexed keys a search value's resources all have, the fewest look-ups that cover its
    tokens: its one key; or its keys in pairs (the last one paired again with the first when their
    number is odd)."""
    keys = search_keys(value)
    if len(keys) < 2:
        return keys
    pairs = [pair_key(keys[i], keys[i + 1]) for i in range(0, len(keys) - 1, 2)]
    if len(keys) % 2:
        pairs.append(pair_key(keys[0], keys[-1]))
    return pairs


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


#: the types with ``phonetic`` (R4 individual-phonetic)
TYPES = ("Patient", "Person", "Practitioner", "RelatedPerson")


def stored_rows(pk: int, resource: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``idx_token`` rows of the stored resource ``pk``'s names (the data migrations 0027, 0028)."""
    names = resource.get("name")
    if not isinstance(names, list):
        return []
    return [{"resource_pk": pk, **row} for row in phonetic_rows("phonetic", [("HumanName", n) for n in names])]


def phonetic_rows(code: str, values: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """The token rows of the names ``values`` (HumanNames): one per sound key, and one per pair of
    them (of all the names together, as a search matches keys from any of them)."""
    keys: dict[str, None] = {}
    for _, name in values:
        if isinstance(name, dict):
            keys.update(dict.fromkeys(phonetic_keys(_written(name))))
    found = list(keys)
    pairs = [pair_key(a, b) for i, a in enumerate(found) for b in found[i + 1 :]]
    return [{"param": code, "system": None, "code": key, "text": None} for key in (*found, *pairs)]
