"""Fixtures for the pure terminology tests: one engine over the shipped content, plus small fixtures."""

from __future__ import annotations

import copy

import pytest

from terminology.engine import TerminologyEngine
from terminology.store import TerminologyRegistry

COLORS = "http://example.org/CodeSystem/colors"
SHADES = "http://example.org/CodeSystem/shades"

COLORS_CS = {
    "resourceType": "CodeSystem",
    "url": COLORS,
    "version": "1",
    "name": "Colors",
    "status": "active",
    "content": "complete",
    "caseSensitive": False,
    "property": [{"code": "warm", "type": "boolean"}],
    "concept": [
        {
            "code": "red",
            "display": "Red",
            "property": [{"code": "warm", "valueBoolean": True}],
            "designation": [{"language": "id", "value": "Merah"}],
            "concept": [{"code": "crimson", "display": "Crimson red"}, {"code": "scarlet", "display": "Scarlet"}],
        },
        {
            "code": "blue",
            "display": "Blue",
            "property": [{"code": "warm", "valueBoolean": False}],
            "concept": [{"code": "navy", "display": "Navy blue"}],
        },
    ],
}

COLORS_TO_SHADES = {
    "resourceType": "ConceptMap",
    "url": "http://example.org/ConceptMap/colors-to-shades",
    "version": "1",
    "status": "active",
    "sourceUri": "http://example.org/ValueSet/colors",
    "targetUri": "http://example.org/ValueSet/shades",
    "group": [
        {
            "source": COLORS,
            "target": SHADES,
            "element": [
                {"code": "red", "display": "Red", "target": [{"code": "R", "display": "Reddish", "equivalence": "equivalent"}]},
                {"code": "crimson", "target": [{"code": "R", "display": "Reddish", "equivalence": "wider"}]},
                {"code": "navy", "target": [{"equivalence": "unmatched"}]},
            ],
        }
    ],
}

WARM_VS = {
    "resourceType": "ValueSet",
    "url": "http://example.org/ValueSet/warm",
    "status": "active",
    "compose": {
        "include": [{"system": COLORS, "filter": [{"property": "concept", "op": "is-a", "value": "red"}]}],
        "exclude": [{"system": COLORS, "concept": [{"code": "scarlet"}]}],
    },
}


@pytest.fixture(scope="session")
def registry() -> TerminologyRegistry:
    reg = TerminologyRegistry.load_default()
    for resource in (COLORS_CS, COLORS_TO_SHADES, WARM_VS):
        reg.add(copy.deepcopy(resource))
    return reg


@pytest.fixture(scope="session")
def engine(registry: TerminologyRegistry) -> TerminologyEngine:
    return TerminologyEngine(registry)
