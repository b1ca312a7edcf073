"""Scoring a pair of Patients: Fellegi-Sunter style weights, a score 0..1, a grade and reasons.

Every field comparison adds a weight in bits (about log2 of how much likelier that outcome is for
two records of one person than for two people); the sum ``w`` becomes the score
``1 / (1 + 2^-(w - MIDPOINT))``. The grade follows from the score, then rules that no sum may
override cap it (docs/mpi.md has the table and worked examples):

* ``certain`` needs an identifier that agrees exactly and is not suspect (NIK, IHS number or
  BPJS card), no conflicting NIK, and birth dates that agree (or differ by a typo);
* a newborn and its mother (the placeholder name "By. Ny. <mother>", or the baby's ``nik-ibu``
  being the other's NIK) are never above ``possible``: a household, not one person;
* twins (different multipleBirthInteger) and one NIK on two people whose birth date and sex
  both differ are never above ``possible``.

The weights are set by hand and checked against the labelled synthetic population in
``tests/mpi`` (precision and recall per grade are asserted there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fhir_server.mpi import compare as C
from fhir_server.mpi.features import Features, Nik
from fhir_server.mpi.names import ParsedName

CERTAIN, PROBABLE, POSSIBLE, CERTAINLY_NOT = "certain", "probable", "possible", "certainly-not"
GRADES = (CERTAIN, PROBABLE, POSSIBLE)
_RANK = {CERTAINLY_NOT: 0, POSSIBLE: 1, PROBABLE: 2, CERTAIN: 3}

#: the summed weight that scores 0.5
MIDPOINT = 10.0
#: lowest score of each grade (below POSSIBLE a pair is not a match)
THRESHOLDS = {CERTAIN: 0.99, PROBABLE: 0.8, POSSIBLE: 0.4}

#: weights in bits per comparison outcome (docs/mpi.md explains each)
W = {
    "nik.exact": 14.0,
    "nik.exact-suspect": 6.0,
    "nik.one-digit": 7.0,
    "nik.transposed": 8.0,
    "nik.two-digits": -2.0,
    "nik.different": -10.0,
    "nik.different-invalid": -3.0,
    "ihs.exact": 14.0,
    "ihs.different": -8.0,
    "bpjs.exact": 12.0,
    "bpjs.one-digit": 5.0,
    "bpjs.different": -3.0,
    "name.exact-per-token": 1.5,
    "name.exact-base": 3.0,
    "name.exact-max": 7.5,
    "name.similar": 4.5,
    "name.subset": 3.5,
    "name.partial": 0.0,
    "name.different": -5.0,
    "father.same": 1.0,
    "father.different": -3.0,
    "birth.exact": 7.0,
    "birth.typo": 3.0,
    "birth.partial": 2.0,
    "birth.different": -6.0,
    "gender.same": 0.5,
    "gender.different": -4.0,
    "phone.same": 3.0,
    "village.same": 1.0,
    "village.different": -0.5,
    "rtrw.same": 1.5,
    "household.mother": 2.0,
    "household.siblings": 1.0,
    "twins": -10.0,
}


@dataclass(frozen=True, slots=True)
class Match:
    """How likely two records are one person."""

    score: float
    #: certain / probable / possible, or None below possible (not a match)
    grade: str | None
    reasons: tuple[str, ...]
    weight: float


def to_score(weight: float) -> float:
    return 1.0 / (1.0 + math.pow(2.0, MIDPOINT - weight))


def grade_of(score: float) -> str | None:
    for grade in GRADES:
        if score >= THRESHOLDS[grade]:
            return grade
    return None


def at_most(grade: str | None, cap: str) -> str | None:
    if grade is None:
        return None
    return grade if _RANK[grade] <= _RANK[cap] else cap


class _Tally:
    __slots__ = ("caps", "close_niks", "reasons", "strong_id", "weight")

    def __init__(self) -> None:
        self.weight = 0.0
        self.reasons: list[str] = []
        self.caps: list[str] = []
        #: an exact, non-suspect identifier agreement (NIK, IHS, BPJS): needed for certain
        self.strong_id = False
        #: NIKs one digit (or one swap) apart
        self.close_niks = False

    def add(self, key: str, reason: str) -> None:
        self.weight += W[key]
        self.reasons.append(f"{reason} ({W[key]:+g})")

    def cap(self, grade: str, reason: str) -> None:
        self.caps.append(grade)
        self.reasons.append(f"{reason}: at most {grade}")


def score_pair(a: Features, b: Features) -> Match:
    """Score records ``a`` and ``b`` (see the module docstring)."""
    t = _Tally()
    _identifiers(t, a, b)
    household = _household(t, a, b)
    if not household:
        name_level = _names(t, a, b)
        if t.close_niks and name_level in (C.NAME_PARTIAL, C.NAME_DIFFERENT):
            t.cap(POSSIBLE, "NIKs one digit apart on different names (twins or siblings registered together)")
    _birth(t, a, b)
    _demographics(t, a, b)
    score = to_score(t.weight)
    grade = grade_of(score)
    if grade == CERTAIN and not t.strong_id:
        grade = PROBABLE
        t.reasons.append("no identifier agrees exactly: at most probable")
    for cap in t.caps:
        grade = at_most(grade, cap)
    return Match(round(score, 4), grade, tuple(t.reasons), t.weight)


def _identifiers(t: _Tally, a: Features, b: Features) -> None:
    if a.nik and b.nik:
        _nik(t, a, b, a.nik, b.nik)
    if a.ihs and b.ihs:
        if a.ihs & b.ihs:
            t.add("ihs.exact", "IHS number identical")
            t.strong_id = True
        else:
            t.add("ihs.different", "IHS numbers differ")
            t.caps.append(PROBABLE)
    if a.bpjs and b.bpjs:
        levels = {C.compare_digits(x, y) for x in a.bpjs for y in b.bpjs}
        if C.EXACT in levels:
            t.add("bpjs.exact", "BPJS card number identical")
            t.strong_id = True
        elif C.ONE_DIGIT in levels or C.TRANSPOSED in levels:
            t.add("bpjs.one-digit", "BPJS card numbers differ by one digit or two swapped digits")
        else:
            t.add("bpjs.different", "BPJS card numbers differ")


def _nik(t: _Tally, a: Features, b: Features, x: Nik, y: Nik) -> None:
    level = C.compare_digits(x.value, y.value)
    if level == C.EXACT:
        if x.suspect or y.suspect or not x.valid:
            why = "invalid" if not x.valid else "its encoded birth date or sex contradicts a record"
            t.add("nik.exact-suspect", f"NIK identical but suspect ({why})")
        else:
            t.add("nik.exact", "NIK identical")
            t.strong_id = True
        if (
            a.birth_date
            and b.birth_date
            and a.gender
            and b.gender
            and C.compare_dates(a.birth_date, b.birth_date) == C.DATE_DIFFERENT
            and a.gender != b.gender
        ):
            t.cap(POSSIBLE, "one NIK on records whose birth date and sex both differ (a shared or reused NIK)")
    elif level in (C.ONE_DIGIT, C.TRANSPOSED):
        key = "nik.one-digit" if level == C.ONE_DIGIT else "nik.transposed"
        t.add(key, "NIKs differ by one digit" if level == C.ONE_DIGIT else "NIKs differ by two swapped neighbouring digits")
        t.close_niks = True
    elif x.valid and y.valid and C.within_two(x.value, y.value):
        t.add("nik.two-digits", "NIKs differ by two digits (two typos, or relatives registered together)")
        t.caps.append(PROBABLE)
    elif x.valid and y.valid:
        t.add("nik.different", "different valid NIKs")
        t.caps.append(PROBABLE)
    else:
        t.add("nik.different-invalid", "NIKs differ (one is not a valid NIK)")


def _household(t: _Tally, a: Features, b: Features) -> bool:
    """Mother and newborn, or siblings: household signals that cap the grade. True when the names
    must not be compared as one person's (a newborn's placeholder carries its mother's name)."""
    mother_child = False
    for child, other in ((a, b), (b, a)):
        # both "By. Ny." records: the baby's record with its mother's NIK typed as its own
        if other.nik and other.nik.value in child.mother_niks and not (a.name.newborn and b.name.newborn):
            t.add("household.mother", "one record's mother NIK (nik-ibu) is the other's NIK")
            mother_child = True
    if a.name.newborn != b.name.newborn:
        baby, adult = (a, b) if a.name.newborn else (b, a)
        level, _ = C.compare_names(baby.name, adult.name)
        if level in (C.NAME_EXACT, C.NAME_SIMILAR, C.NAME_SUBSET):
            t.add("household.mother", "a newborn's placeholder name ('By. Ny.') names the other record as its mother")
            mother_child = True
    if mother_child:
        t.cap(POSSIBLE, "newborn and mother")
        return True
    if a.mother_niks & b.mother_niks:
        t.add("household.siblings", "same mother NIK (nik-ibu)")
    return a.name.newborn != b.name.newborn


def _names(t: _Tally, a: Features, b: Features) -> str | None:
    if not a.name.tokens or not b.name.tokens:
        return None
    best: tuple[str, float, ParsedName, ParsedName] | None = None
    for x in (a.name, *a.other_names):
        for y in (b.name, *b.other_names):
            level, sim = C.compare_names(x, y)
            if best is None or C.name_rank(level) < C.name_rank(best[0]):
                best = (level, sim, x, y)
    assert best is not None
    level, sim, x, y = best
    shown = f"'{' '.join(x.tokens)}' / '{' '.join(y.tokens)}'"
    if level == C.NAME_EXACT:
        w = min(W["name.exact-base"] + W["name.exact-per-token"] * len(x.distinctive), W["name.exact-max"])
        t.weight += w
        t.reasons.append(f"names equal after normalisation {shown} ({w:+g})")
    elif level == C.NAME_SIMILAR:
        t.add("name.similar", f"names similar {shown}, {sim:.2f}")
    elif level == C.NAME_SUBSET:
        t.add("name.subset", f"one name contains the other {shown}")
    elif level == C.NAME_PARTIAL:
        t.add("name.partial", f"names share little {shown}, {sim:.2f}")
    else:
        t.add("name.different", f"names differ {shown}, {sim:.2f}")
    if x.father and y.father:
        flevel, _ = C.compare_names(ParsedName(x.father), ParsedName(y.father))
        if flevel in (C.NAME_EXACT, C.NAME_SIMILAR):
            t.add("father.same", "same father's name (bin/binti)")
        elif flevel == C.NAME_DIFFERENT:
            t.add("father.different", "different father's names (bin/binti)")
    return level


def _birth(t: _Tally, a: Features, b: Features) -> None:
    if a.birth_order is not None and b.birth_order is not None and a.birth_order != b.birth_order and a.birth_order + b.birth_order > 1:
        t.add("twins", f"different multiple-birth order ({a.birth_order} / {b.birth_order})")
        t.cap(POSSIBLE, "twins")
    if not a.birth_date or not b.birth_date:
        return
    level = C.compare_dates(a.birth_date, b.birth_date)
    if level == C.DATE_EXACT:
        t.add("birth.exact", "birth date identical")
    elif level == C.DATE_TYPO:
        t.add("birth.typo", f"birth dates differ by a typo ({a.birth_date} / {b.birth_date})")
    elif level == C.DATE_PARTIAL:
        t.add("birth.partial", "birth dates agree at the lower precision")
    else:
        t.add("birth.different", f"birth dates differ ({a.birth_date} / {b.birth_date})")
        if t.strong_id:
            t.caps.append(PROBABLE)


def _demographics(t: _Tally, a: Features, b: Features) -> None:
    if a.gender and b.gender:
        if a.gender == b.gender:
            t.add("gender.same", "same sex")
        else:
            t.add("gender.different", "different sex")
    if a.phones & b.phones:
        t.add("phone.same", "a phone number in common")
    if a.village and b.village:
        if a.village == b.village:
            t.add("village.same", f"same village (desa/kelurahan {a.village})")
            if a.rt and a.rw and (a.rt, a.rw) == (b.rt, b.rw):
                t.add("rtrw.same", f"same RT/RW {a.rt}/{a.rw}")
        else:
            t.add("village.different", "different villages")
