"""Blocking keys: the indexed values candidates for a comparison are found by (pure).

Every Patient write stores :func:`stored_keys` in the ``idx_mpi`` table (through the search
index extraction, so every write path keeps them current); ``$match`` and the duplicate scan
look up :func:`probe_keys` and score only the records that share a key. Each key is narrow, so
the number of candidates depends on how many people look alike, not on the database size:

* ``nik:`` the NIK; ``nkN:`` the NIK with its N-th group of four digits blanked, so a NIK with
  one mistyped digit (or two swapped digits inside a group) still meets its original;
* ``ibu:`` a newborn's mother NIK (a probe with a NIK finds the babies registered under it, a
  probe with a mother NIK finds the mother and the siblings);
* ``bpjs:``, ``ihs:``, ``tel:`` the BPJS card, IHS number, phone;
* ``dn:`` birth date + one name token's sound key (catches every name variant that keeps one token);
* ``yn:`` birth year + the whole name's sound key (catches day/month typos);
* ``vn:`` village code + the whole name's sound key (catches year typos and missing dates).
"""

from __future__ import annotations

import re
from functools import lru_cache

from fhir_server.mpi.features import Features
from fhir_server.mpi.names import ParsedName

#: NIK digit groups blanked one at a time for the ``nkN:`` keys
NIK_GROUPS = ((0, 4), (4, 8), (8, 12), (12, 16))
_VOWELS_AFTER_FIRST = re.compile(r"(?<=.)[aeiou]")
_DOUBLES = re.compile(r"(.)\1+")
_SOUND = str.maketrans({"y": "i", "z": "s", "v": "f", "q": "k", "w": "u"})


@lru_cache(maxsize=65536)
def sound_key(token: str) -> str:
    """A coarse key for one name token: similar-sounding spellings (Rizki, Rizky, Risky; Aminah,
    Aminnah) share it. Letters that vary in Indonesian spelling are merged, doubled letters
    collapsed, vowels after the first letter dropped, five letters kept."""
    t = _DOUBLES.sub(r"\1", token.translate(_SOUND))
    return _VOWELS_AFTER_FIRST.sub("", t)[:5]


def name_key(name: ParsedName) -> str:
    return "-".join(sorted(sound_key(t) for t in name.distinctive))


def stored_keys(f: Features) -> list[str]:
    """The keys stored for a Patient (deduplicated, in a stable order)."""
    keys: list[str] = []
    if f.nik and len(f.nik.value) == 16:
        nik = f.nik.value
        keys.append(f"nik:{nik}")
        keys.extend(f"nk{i}:{nik[:lo]}{nik[hi:]}" for i, (lo, hi) in enumerate(NIK_GROUPS))
    keys.extend(f"ibu:{m}" for m in sorted(f.mother_niks))
    keys.extend(f"bpjs:{c}" for c in sorted(f.bpjs))
    keys.extend(f"ihs:{c}" for c in sorted(f.ihs))
    keys.extend(f"tel:{p}" for p in sorted(f.phones))
    names = [f.name, *f.other_names] if f.name.tokens else []
    for name in names:
        whole = name_key(name)
        if f.birth_date:
            keys.extend(f"dn:{f.birth_date}:{sound_key(t)}" for t in sorted(set(name.distinctive)))
            keys.append(f"yn:{f.birth_date[:4]}:{whole}")
        if f.village:
            keys.append(f"vn:{f.village}:{whole}")
    return list(dict.fromkeys(keys))


def probe_keys(f: Features) -> list[str]:
    """The keys to look up for a record: its own, plus the household links (mother <-> newborn)."""
    keys = stored_keys(f)
    if f.nik and len(f.nik.value) == 16:
        keys.append(f"ibu:{f.nik.value}")
    keys.extend(f"nik:{m}" for m in sorted(f.mother_niks))
    return list(dict.fromkeys(keys))
