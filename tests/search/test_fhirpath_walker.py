"""The plain-Python FHIRPath shapes (search/fhirpath_walker.py) give exactly fhirpathpy's index rows.

Resources are generated per parameter from its expression: every union branch,
choice types, one or several items, primitive extensions (``_x``), so the
quirks fhirpathpy has (untyped union values, ``as`` on several items raising)
are met as well as the plain cases.
"""

from __future__ import annotations

import contextlib
import random
import re
from typing import Any

import pytest
from searchsamples import COVERAGE, ENCOUNTER, PATIENT

from fhir_server.search.extract import _dedupe, _walker, extract_index, fhirpath_values, getter, rows_for
from fhir_server.search.fhirpath_walker import _CHOICE, _ELSEWHERE, _PATH2TYPE, Fallback, compile_walker
from fhir_server.search.parameters import params_for, resource_types

_SAMPLE: dict[str, Any] = {
    "Quantity": {"value": 1.5, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"},
    "Age": {"value": 4, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"},
    "Duration": {"value": 2, "unit": "d"},
    "SimpleQuantity": {"value": 3, "code": "mL"},
    "Money": {"value": 10, "currency": "IDR"},
    "Range": {"low": {"value": 1}, "high": {"value": 2}},
    "SampledData": {"origin": {"value": 0}, "period": 1, "dimensions": 1, "data": "1 2"},
    "CodeableConcept": {"coding": [{"system": "http://s", "code": "c1", "display": "One"}], "text": "Text One"},
    "Coding": {"system": "http://s", "code": "c2", "display": "Two"},
    "Identifier": {"system": "http://i", "value": "v1", "type": {"coding": [{"system": "http://t", "code": "MR"}]}},
    "Reference": {"reference": "Patient/p1", "display": "P"},
    "Period": {"start": "2020-01-02", "end": "2020-02-03T10:00:00+07:00"},
    "Timing": {"event": ["2021-05-06"]},
    "HumanName": {"family": "Lubis", "given": ["Siti"]},
    "Address": {"city": "Bandung", "line": ["Jl. 1"]},
    "ContactPoint": {"system": "phone", "value": "0812"},
    "Attachment": {"url": "http://a"},
    "Annotation": {"text": "note"},
}
_PRIMITIVE: dict[str, Any] = {
    "boolean": True,
    "integer": 7,
    "decimal": 2.25,
    "positiveInt": 3,
    "unsignedInt": 0,
    "date": "2019-03",
    "dateTime": "2019-03-04T05:06:07Z",
    "instant": "2019-03-04T05:06:07.123Z",
    "time": "10:00:00",
}


def _value(rng: random.Random, fhir_type: str) -> Any:
    if fhir_type in _SAMPLE:
        v = dict(_SAMPLE[fhir_type])
        if rng.random() < 0.2:  # a CodeableConcept with text only, a Coding without code, ...
            v.pop(next(iter(v)))
        return v
    if fhir_type in _PRIMITIVE:
        return _PRIMITIVE[fhir_type]
    if fhir_type[:1].islower() or fhir_type.startswith("System."):
        return rng.choice(["abc", "Def Ghi", "http://x/y", "a|b"])
    return {"id": "x", "text": "inner"}  # a backbone or other complex element


def _fill(rng: random.Random, node: dict, key: str, names: list[str]) -> None:
    """Put a value at the dotted path ``names`` below ``node`` (whose type/element path is ``key``)."""
    name, rest = names[0], names[1:]
    path = _ELSEWHERE.get(f"{key}.{name}", f"{key}.{name}")
    if path in _CHOICE:
        t = rng.choice(_CHOICE[path])
        field = name + t[0].upper() + t[1:]
        if rng.random() < 0.1:
            node["_" + field] = {"extension": [{"url": "http://e", "valueString": "x"}]}
        node[field] = _value(rng, _PATH2TYPE.get(path + t[0].upper() + t[1:], t))
        return
    t = _PATH2TYPE.get(path, "BackboneElement")
    if not rest:
        v = _value(rng, t)
        if rng.random() < 0.4:
            node[name] = [v] + ([_value(rng, t)] if rng.random() < 0.5 else [])
        else:
            node[name] = v
        if (t[:1].islower() or t.startswith("System.")) and rng.random() < 0.1:
            node["_" + name] = {"extension": [{"url": "http://e", "valueString": "x"}]}
        return
    children = [{} for _ in range(rng.choice([1, 1, 2]))]
    for child in children:
        _fill(rng, child, path if t in ("BackboneElement", "Element") else t, rest)
    node[name] = children if len(children) > 1 or rng.random() < 0.5 else children[0]


_STEPS = re.compile(r"([A-Z][A-Za-z]+)((?:\.[a-z][A-Za-z]*)+)")


def _resource(rng: random.Random, res_type: str, expression: str) -> dict:
    resource: dict = {"resourceType": res_type, "id": "r1"}
    for branch in expression.split(" | "):
        if rng.random() < 0.3:
            continue
        for m in _STEPS.finditer(branch):
            names = m.group(2)[1:].split(".")
            as_type = re.search(r"as\(?\s*([A-Za-z]+)\)", branch)
            if as_type and m.group(1) == res_type:
                last = _ELSEWHERE.get(".".join([res_type, *names]), ".".join([res_type, *names]))
                if last in _CHOICE and rng.random() < 0.7:  # mostly the type the cast asks for
                    t = as_type.group(1)
                    names[-1] += t[0].upper() + t[1:]
            if m.group(1) == res_type:
                with contextlib.suppress(KeyError, IndexError):
                    _fill(rng, resource, res_type, names)
    return resource


def _rows(p, values_of, resource: dict, res_type: str) -> Any:
    try:
        return list(map(repr, _dedupe(rows_for(p, values_of(resource), res_type)[1])))  # as extract_index
    except Fallback:
        raise
    except Exception:  # noqa: BLE001 - extract_index skips a parameter whose evaluation fails
        return "error"


def _new_fast_params() -> list[tuple[str, str]]:
    out = []
    for res_type in resource_types():
        for code, p in params_for(res_type).items():
            if p.type == "composite" or not p.expression or code.startswith("_") or _walker(p.expression) is not None:
                continue  # composites, meta and plain paths have their own fast paths (test_extract.py)
            if compile_walker(res_type, p.expression) is not None:
                out.append((res_type, code))
    return out


NEW_FAST = _new_fast_params()


def test_the_shapes_cover_what_mattered():
    for res_type, code in [
        ("Observation", "value-quantity"),
        ("Observation", "combo-code"),
        ("Observation", "date"),
        ("Condition", "onset-date"),
        ("Condition", "abatement-age"),
        ("Observation", "value-string"),
    ]:
        assert (res_type, code) in NEW_FAST
        assert getter(res_type, code)[0] == "fast"


@pytest.mark.parametrize("res_type,code", NEW_FAST, ids=lambda x: x)
def test_walker_equals_fhirpath(res_type: str, code: str):
    p = params_for(res_type)[code]
    g = getter(res_type, code)
    assert g is not None and g[0] == "fast"
    rng = random.Random(f"{res_type}.{code}")
    for _ in range(25):
        resource = _resource(rng, res_type, p.expression)
        fast = _rows(p, g[1], resource, res_type)
        slow = _rows(p, lambda r: fhirpath_values(r, p.expression), resource, res_type)
        assert fast == slow, (resource, fast, slow)


def test_observation_cases_by_hand():
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "bp"},
        "effectivePeriod": {"start": "2020-01-01"},
        "component": [
            {"code": {"text": "sys"}, "valueQuantity": {"value": 120}},
            {"code": {"text": "dia"}, "valueQuantity": {"value": 80}},
        ],
    }
    for variant in (
        obs,
        {**obs, "_effectiveDateTime": {"extension": []}},
        {**obs, "component": obs["component"][:1]},
        {**obs, "valueString": "x", "_valueString": {"id": "1"}},
    ):
        for code, p in params_for("Observation").items():
            g = getter("Observation", code)
            if ("Observation", code) not in NEW_FAST:
                continue
            fast = _rows(p, g[1], variant, "Observation")
            slow = _rows(p, lambda r, p=p: fhirpath_values(r, p.expression), variant, "Observation")
            assert fast == slow, code


@pytest.mark.parametrize("resource", [PATIENT, ENCOUNTER, COVERAGE], ids=lambda r: r["resourceType"])
def test_extract_index_unchanged_on_samples(resource):
    rows = extract_index(resource)
    assert rows.count() > 0
