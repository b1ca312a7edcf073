"""A labelled synthetic Indonesian population for measuring the matcher (deterministic by seed).

Each person gets one record, some get more (the same person registered again with realistic
variation: titles, bin/binti, Muhammad spellings, old spellings, a dropped or reordered name
token, a mistyped or missing NIK, a birth-date typo, a reformatted phone, no address), and the
population holds the hard cases that must *not* be merged: twins, namesakes, parents and
children sharing an address and phone, and newborns registered as "By. Ny. <mother>" under the
mother's NIK (sometimes typed as the baby's own NIK). Every record carries its ``person`` label;
``kind`` says what it is (``person``, ``duplicate``, ``twin``, ``namesake``, ``shared-nik``, ``child``,
``newborn``).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

NIK = "https://fhir.kemkes.go.id/id/nik"
NIK_IBU = "https://fhir.kemkes.go.id/id/nik-ibu"
IHS = "https://fhir.kemkes.go.id/id/patient-ihs-number"
BPJS = "https://fhir-server.id/id/bpjs-kartu"
ADMIN = "https://fhir.kemkes.go.id/r4/StructureDefinition/administrativeCode"

FEMALE = [
    "Siti",
    "Aminah",
    "Dewi",
    "Sri",
    "Nur",
    "Rina",
    "Wati",
    "Ani",
    "Fitri",
    "Indah",
    "Putri",
    "Ayu",
    "Lestari",
    "Rahayu",
    "Kartini",
    "Suryani",
    "Yuliani",
    "Ratna",
    "Endang",
    "Sulastri",
    "Dian",
    "Novi",
    "Ika",
    "Lina",
    "Maya",
    "Nurul",
    "Eka",
    "Wulan",
    "Hartini",
    "Sumarni",
    "Fatimah",
    "Khadijah",
    "Aisyah",
    "Zahra",
    "Rahmawati",
    "Anggraini",
    "Puspita",
    "Kurniasih",
    "Handayani",
    "Susanti",
    "Wahyuni",
    "Maryam",
    "Halimah",
    "Rukmini",
    "Sumiati",
    "Yanti",
    "Ningsih",
    "Lilis",
    "Tuti",
    "Wening",
    "Ratih",
]
MALE = [
    "Muhammad",
    "Ahmad",
    "Budi",
    "Agus",
    "Joko",
    "Slamet",
    "Bambang",
    "Hendra",
    "Rizki",
    "Dedi",
    "Eko",
    "Andi",
    "Yusuf",
    "Hasan",
    "Iwan",
    "Wahyu",
    "Sutrisno",
    "Suharto",
    "Supriyadi",
    "Darmawan",
    "Hidayat",
    "Setiawan",
    "Kurniawan",
    "Santoso",
    "Gunawan",
    "Prasetyo",
    "Nugroho",
    "Saputra",
    "Firmansyah",
    "Syahputra",
    "Rudi",
    "Hadi",
    "Sugeng",
    "Teguh",
    "Yanto",
    "Ridwan",
    "Fauzi",
    "Arif",
    "Imam",
    "Abdul",
    "Rahman",
    "Hamid",
    "Ilham",
    "Fajar",
    "Dimas",
    "Bayu",
    "Cahyono",
    "Suyono",
    "Sukarno",
]
SURNAMEISH = [
    "Wijaya",
    "Halim",
    "Salim",
    "Tanujaya",
    "Gozali",
    "Siregar",
    "Nasution",
    "Harahap",
    "Lubis",
    "Simanjuntak",
    "Pratama",
    "Utomo",
    "Wibowo",
    "Susilo",
]
TITLES_F = ("Hj.", "Ny.", "dr.", "Ibu", "Hj")
TITLES_M = ("H.", "Tn.", "dr.", "Bapak", "Ir.", "Drs.", "H")
DEGREES = (", S.Pd.", ", S.Kom", ", S.E.", ", M.Kes", ", S.H., M.H.", " S.Pd")
MUHAMMAD = ("Muhammad", "Muhamad", "Mohammad", "Mochammad", "Moch.", "M.", "Moh.", "Muh.", "Mohamad")
OLD = {"Suharto": "Soeharto", "Joko": "Djoko", "Cahyono": "Tjahjono", "Suryani": "Soerjani", "Yusuf": "Jusuf", "Ahmad": "Achmad",
       "Suyono": "Soejono", "Sukarno": "Soekarno", "Sumarni": "Soemarni", "Sumiati": "Soemiati", "Rukmini": "Roekmini",
       "Yanto": "Janto", "Wahyuni": "Wahjoeni", "Wahyu": "Wahjoe", "Syahputra": "Sjahputra", "Cahya": "Tjahja"}  # fmt: skip


@dataclass
class Record:
    person: str
    kind: str
    resource: dict[str, Any]
    #: the person's mother (newborn records) or parent (child records)
    related: str | None = None


@dataclass
class Person:
    pid: str
    given: list[str]
    gender: str
    birth: dt.date
    village: str
    rt: str
    rw: str
    nik: str
    bpjs: str | None
    phone: str | None
    ihs: str | None
    father: str
    birth_order: int | None = None
    mother_nik: str | None = None
    newborn_of: str | None = None  # the mother's name text for a "By. Ny." record
    records: list[Record] = field(default_factory=list)


class Population:
    def __init__(self, seed: int, villages: int = 120) -> None:
        self.rng = random.Random(seed)
        self.serials: dict[str, int] = {}
        self.persons: list[Person] = []
        self.records: list[Record] = []
        #: persons made so far (their ids), also when ``persons`` is emptied between chunks (``stream``)
        self.made = 0
        self.villages = [
            f"{p}{k:02d}{c:02d}{v}"
            for p, k, c, v in (
                (
                    self.rng.choice(("32", "33", "35", "31")),
                    self.rng.choice((4, 7, 12, 71, 73)),
                    self.rng.randint(1, 20),
                    self.rng.choice(("1001", "2003", "2011", "1005")),
                )
                for _ in range(villages)
            )
        ]

    # -- people ----------------------------------------------------------------------------
    def nik_for(self, village: str, birth: dt.date, gender: str) -> str:
        day = birth.day + (40 if gender == "female" else 0)
        stem = f"{village[:6]}{day:02d}{birth.month:02d}{birth.year % 100:02d}"
        self.serials[stem] = self.serials.get(stem, 0) + 1
        return f"{stem}{self.serials[stem]:04d}"

    def new_person(
        self, *, gender: str | None = None, birth: dt.date | None = None, near: Person | None = None, given: list[str] | None = None
    ) -> Person:
        r = self.rng
        gender = gender or r.choice(("male", "female"))
        birth = birth or dt.date(1940, 1, 1) + dt.timedelta(days=r.randint(0, 83 * 365))
        if given is None:
            pool = FEMALE if gender == "female" else MALE
            n = r.choices((1, 2, 3), (0.15, 0.55, 0.30))[0]
            given = [r.choice(pool) for _ in range(n)]
            if n >= 2 and r.random() < 0.15:
                given[-1] = r.choice(SURNAMEISH)
            given = list(dict.fromkeys(given))
        village = near.village if near else r.choice(self.villages)
        p = Person(
            pid=f"p{self.made}",
            given=given,
            gender=gender,
            birth=birth,
            village=village,
            rt=near.rt if near else f"{r.randint(1, 15):03d}",
            rw=near.rw if near else f"{r.randint(1, 9):03d}",
            nik=self.nik_for(village, birth, gender),
            bpjs=f"000{r.randint(10**9, 10**10 - 1)}" if r.random() < 0.7 else None,
            phone=(near.phone if near and r.random() < 0.6 else f"08{r.randint(11, 99)}{r.randint(10**6, 10**8 - 1)}")
            if r.random() < 0.7
            else None,
            ihs=f"P{r.randint(10**10, 10**11 - 1)}" if r.random() < 0.3 else None,
            father=r.choice(MALE),
        )
        self.persons.append(p)
        self.made += 1
        return p

    def resource(
        self,
        p: Person,
        *,
        name: str | None = None,
        nik: str | bool | None = True,
        bpjs: bool = True,
        phone: str | bool | None = True,
        birth: str | bool | None = True,
        address: bool = True,
        gender: bool = True,
        ihs: bool = True,
    ) -> dict[str, Any]:
        ids = []
        nik_value = p.nik if nik is True else nik
        if nik_value:
            ids.append({"system": NIK, "value": nik_value})
        if p.mother_nik:
            ids.append({"system": NIK_IBU, "value": p.mother_nik})
        if bpjs and p.bpjs:
            ids.append({"system": BPJS, "value": p.bpjs})
        if ihs and p.ihs:
            ids.append({"system": IHS, "value": p.ihs})
        res: dict[str, Any] = {"resourceType": "Patient", "name": [{"text": name or self.base_name(p)}]}
        if ids:
            res["identifier"] = ids
        if gender:
            res["gender"] = p.gender
        birth_value = p.birth.isoformat() if birth is True else birth
        if birth_value:
            res["birthDate"] = birth_value
        phone_value = p.phone if phone is True else phone
        if phone_value:
            res["telecom"] = [{"system": "phone", "value": phone_value}]
        if address:
            sub = [{"url": "village", "valueCode": p.village}, {"url": "rt", "valueCode": p.rt}, {"url": "rw", "valueCode": p.rw}]
            res["address"] = [{"use": "home", "extension": [{"url": ADMIN, "extension": sub}]}]
        if p.birth_order is not None:
            res["multipleBirthInteger"] = p.birth_order
        return res

    @staticmethod
    def base_name(p: Person) -> str:
        if p.newborn_of:
            return f"By. Ny. {p.newborn_of}"
        return " ".join(p.given)

    def add(self, p: Person, kind: str, resource: dict[str, Any], related: str | None = None) -> None:
        rec = Record(p.pid, kind, resource, related)
        p.records.append(rec)
        self.records.append(rec)

    # -- variation of one person's record --------------------------------------------------
    def variant_name(self, p: Person) -> str:
        r = self.rng
        tokens = list(p.given)
        if p.newborn_of:
            return r.choice((f"Bayi Ny. {p.newborn_of}", f"BY NY {p.newborn_of.upper()}", f"By.Ny. {p.newborn_of}"))
        changes = r.sample(range(9), r.choice((1, 1, 2, 3)))
        prefix, suffix = "", ""
        for c in changes:
            if c == 0:
                prefix = r.choice(TITLES_F if p.gender == "female" else TITLES_M) + " "
            elif c == 1:
                suffix += f" {'binti' if p.gender == 'female' else 'bin'} {p.father}"
            elif c == 2 and "Muhammad" in tokens:
                tokens[tokens.index("Muhammad")] = r.choice(MUHAMMAD)
            elif c == 3:
                tokens = [OLD.get(t, t) for t in tokens]
            elif c == 4 and len(tokens) >= 3:
                tokens.pop(r.randrange(1, len(tokens)))
            elif c == 5 and len(tokens) >= 2:
                tokens = tokens[1:] + tokens[:1]
            elif c == 6:
                suffix += r.choice(DEGREES)
            elif c == 7:
                i = max(range(len(tokens)), key=lambda k: len(tokens[k]))
                t = tokens[i]
                if len(t) >= 5:
                    j = r.randrange(1, len(t) - 1)
                    tokens[i] = t[:j] + r.choice("aeiouny") + t[j + 1 :]
            elif c == 8:
                tokens = [t.upper() for t in tokens]
        return (prefix + " ".join(tokens) + suffix).strip()

    def variant(self, p: Person) -> dict[str, Any]:
        r = self.rng
        nik_choice = r.choices(("keep", "drop", "digit", "swap"), (0.5, 0.25, 0.15, 0.10))[0]
        nik: str | bool | None = True
        if p.newborn_of or nik_choice == "drop":
            nik = None
        elif nik_choice == "digit":
            i = r.randrange(16)
            nik = p.nik[:i] + str((int(p.nik[i]) + r.randint(1, 9)) % 10) + p.nik[i + 1 :]
        elif nik_choice == "swap":
            i = r.randrange(15)
            while p.nik[i] == p.nik[i + 1]:
                i = r.randrange(15)
            nik = p.nik[:i] + p.nik[i + 1] + p.nik[i] + p.nik[i + 2 :]
        birth: str | bool | None = True
        b = r.random()
        if b < 0.08 and p.birth.day <= 12 and p.birth.day != p.birth.month:
            birth = f"{p.birth.year:04d}-{p.birth.day:02d}-{p.birth.month:02d}"
        elif b < 0.16:
            birth = _typo_date(r, p.birth)
        elif b < 0.19:
            birth = None
        phone: str | bool | None = True
        if p.phone and r.random() < 0.3:
            phone = "+62 " + p.phone[1:4] + "-" + p.phone[4:8] + "-" + p.phone[8:]
        elif r.random() < 0.2:
            phone = None
        return self.resource(
            p, name=self.variant_name(p), nik=nik, bpjs=r.random() < 0.6, phone=phone, birth=birth,
            address=r.random() < 0.75, gender=r.random() < 0.98, ihs=r.random() < 0.5,
        )  # fmt: skip


def _typo_date(r: random.Random, born: dt.date) -> str | None:
    text = born.isoformat()
    for _ in range(20):
        i = r.choice((2, 3, 5, 6, 8, 9))
        candidate = text[:i] + str(r.randint(0, 9)) + text[i + 1 :]
        try:
            if candidate != text and dt.date.fromisoformat(candidate) <= dt.date(2025, 12, 31):
                return candidate
        except ValueError:
            continue
    return None


def population(seed: int = 18, people: int = 3000) -> Population:
    """``people`` base persons plus their extra records and the hard non-duplicates."""
    pop = Population(seed)
    for _ in range(people):
        _person(pop)
    return pop


def stream(seed: int, people: int, chunk: int = 20_000, villages: int = 120) -> Iterator[list[dict[str, Any]]]:
    """The records of ``population(seed, people)`` (same generator, ``villages`` villages) in
    lists of those of ``chunk`` base persons, without keeping them: for benchmarks of millions."""
    pop = Population(seed, villages)
    for start in range(0, people, chunk):
        for _ in range(min(chunk, people - start)):
            _person(pop)
        yield [rec.resource for rec in pop.records]
        pop.records, pop.persons = [], []


def _person(pop: Population) -> None:
    """One base person with their extra records and the hard non-duplicates around them."""
    r = pop.rng
    p = pop.new_person()
    pop.add(p, "person", pop.resource(p))
    if r.random() < 0.35:
        for _ in range(r.choice((1, 1, 2))):
            pop.add(p, "duplicate", pop.variant(p))
    roll = r.random()
    if roll < 0.04:  # twins: same birth date, address, phone, father; consecutive NIK serials
        order = r.random() < 0.7
        p.birth_order = 1 if order else None
        p.records[0].resource = pop.resource(p)
        twin = pop.new_person(birth=p.birth, near=p)
        twin.father, twin.phone, twin.birth_order = p.father, p.phone, (2 if order else None)
        if len(p.given) > 1 and r.random() < 0.5:
            twin.given = [p.given[0], *twin.given[-1:]] if twin.given[-1] != p.given[0] else twin.given
        pop.add(twin, "twin", pop.resource(twin), related=p.pid)
    elif roll < 0.09:  # a namesake: the same name, someone else
        other = pop.new_person(gender=p.gender, given=list(p.given))
        same = r.random()
        if same < 0.1:  # born the very same day: only identifiers or the address tell them apart
            other.birth = p.birth
            other.nik = pop.nik_for(other.village, other.birth, other.gender)
        elif same < 0.4:
            other.birth = p.birth.replace(day=min(p.birth.day, 28), month=r.randint(1, 12))
            other.nik = pop.nik_for(other.village, other.birth, other.gender)
        pop.add(other, "namesake", pop.resource(other), related=p.pid)
    elif roll < 0.10:  # someone else registered under this person's NIK (a shared or reused NIK)
        other = pop.new_person()
        pop.add(other, "shared-nik", pop.resource(other, nik=p.nik), related=p.pid)
    elif roll < 0.16:  # a child at the same address and phone, named after the parent now and then
        born = p.birth + dt.timedelta(days=r.randint(18 * 365, 40 * 365))
        if born.year < 2024:
            child = pop.new_person(birth=born, near=p)
            child.phone = p.phone if r.random() < 0.7 else child.phone
            if r.random() < 0.4:
                child.given = [p.given[0], *child.given[-1:]] if child.given[-1] != p.given[0] else child.given
            pop.add(child, "child", pop.resource(child), related=p.pid)
    if p.gender == "female" and 1975 <= p.birth.year <= 2004 and r.random() < 0.25:
        _newborns(pop, p)


def _newborns(pop: Population, mother: Person) -> None:
    r = pop.rng
    born = dt.date(2024, 1, 1) + dt.timedelta(days=r.randint(0, 600))
    twins = r.random() < 0.1
    babies = []
    for order in (1, 2) if twins else (None,):
        baby = pop.new_person(birth=born, near=mother, given=[])
        baby.phone, baby.father = mother.phone, r.choice(MALE)
        baby.newborn_of = pop.variant_name(mother) if r.random() < 0.3 else " ".join(mother.given)
        baby.mother_nik, baby.birth_order = mother.nik, (order if twins else 0)
        # the baby's own NIK is unknown; one record in ten has the mother's NIK typed as its own
        own: str | None = mother.nik if r.random() < 0.1 else None
        pop.add(baby, "newborn", pop.resource(baby, nik=own, bpjs=False, ihs=False), related=mother.pid)
        if r.random() < 0.3:  # registered twice (another ward, another day)
            pop.add(baby, "duplicate", pop.resource(baby, name=pop.variant_name(baby), nik=None, bpjs=False, ihs=False))
        babies.append(baby)
