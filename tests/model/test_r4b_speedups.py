"""fhir_server.model.r4b_speedups gives fhir_core's verdicts, errors included, faster.

Each resource is validated by the R4B model twice, with the pre-checks installed and
with fhir_core's own validators, and the outcomes (the dumped model, or the error list)
must be equal: hand-picked cases for each of the three validators, then thousands of
random one-change mutants of realistic resources.
"""

from __future__ import annotations

import contextlib
import copy
import random
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from fhir_server.model import r4b_speedups
from tests.search.searchsamples import COVERAGE, ENCOUNTER, PATIENT

EXT = "https://fhir.kemkes.go.id/r4/StructureDefinition/administrativeCode"


def _outcome(resource: dict[str, Any]) -> tuple[str, Any]:
    model = get_fhir_model_class(resource["resourceType"])
    try:
        return "ok", model.model_validate(copy.deepcopy(resource)).model_dump(mode="json")
    except Exception as exc:  # noqa: BLE001 - the comparison covers every kind
        errors = exc.errors(include_url=False) if hasattr(exc, "errors") else None
        return type(exc).__name__, repr(errors if errors is not None else exc)


def _both(resource: dict[str, Any]) -> tuple[tuple[str, Any], tuple[str, Any]]:
    assert r4b_speedups.install()
    fast = _outcome(resource)
    r4b_speedups.uninstall()
    try:
        slow = _outcome(resource)
    finally:
        assert r4b_speedups.install()
    return fast, slow


def test_installed_by_the_validator_module() -> None:
    from fhir_core.fhirabstractmodel import FHIRAbstractModel

    import fhir_server.model.validate  # noqa: F401 - installs on import

    assert r4b_speedups._installed
    assert FHIRAbstractModel._validate_one_of_many is r4b_speedups.validate_one_of_many


def test_uninstall_restores_fhir_cores_functions() -> None:
    from fhir_core.fhirabstractmodel import FHIRAbstractModel

    r4b_speedups.install()
    r4b_speedups.uninstall()
    try:
        assert FHIRAbstractModel._validate_one_of_many is not r4b_speedups.validate_one_of_many
        code = FHIRAbstractModel.__dict__["reject_null_complex_elements"].__func__.__code__
        assert "_FHIR_SERVER_REJECT_NULLS" not in code.co_names
    finally:
        r4b_speedups.install()


CASES = {
    "valid Patient": PATIENT,
    "valid Encounter": ENCOUNTER,
    "valid Coverage": COVERAGE,
    # reject_null_complex_elements
    "null in a complex list": {**PATIENT, "name": [None, {"family": "A"}]},
    "null in a nested complex list": {**PATIENT, "address": [{"city": "X", "extension": [None]}]},
    "null in a primitive list (allowed there)": {**PATIENT, "name": [{"given": ["A", None], "_given": [None, {"id": "g"}]}]},
    "null as a whole list": {**PATIENT, "identifier": None},
    # _validate_one_of_many
    "two value[x] in an Extension": {**PATIENT, "extension": [{"url": "http://x", "valueString": "a", "valueCode": "b"}]},
    "two deceased[x]": {**PATIENT, "deceasedBoolean": True, "deceasedDateTime": "2020-01-01"},
    "a required choice missing (Observation.effective is optional, Extension value is not required)": {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
    },
    "required choice given as null": {"resourceType": "Timing", "repeat": {"boundsDuration": None}},
    "choice given as null": {**PATIENT, "deceasedBoolean": None},
    "multipleBirth twice": {**PATIENT, "multipleBirthInteger": 1, "multipleBirthBoolean": True},
    # _validate_required_primitive_elements
    "Extension without url": {**PATIENT, "extension": [{"valueString": "a"}]},
    "Extension url only as an extension": {
        **PATIENT,
        "extension": [{"_url": {"extension": [{"url": "http://x", "valueString": "y"}]}, "valueString": "a"}],
    },
    "Patient.link without type": {**PATIENT, "link": [{"other": {"reference": "Patient/p0"}}]},
    "Patient.link type null with extension": {
        **PATIENT,
        "link": [{"other": {"reference": "Patient/p0"}, "type": None, "_type": {"extension": [{"url": "http://x", "valueString": "y"}]}}],
    },
    "Narrative without status": {**PATIENT, "text": {"div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'}},
    "administrative code extension": {
        **PATIENT,
        "address": [
            {
                "extension": [
                    {
                        "url": EXT,
                        "extension": [{"url": "province", "valueCode": "31"}, {"url": "rt", "valueCode": "001", "valueString": "1"}],
                    }
                ]
            }
        ],
    },
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_outcome_as_fhir_core(name: str) -> None:
    fast, slow = _both(CASES[name])
    assert fast == slow


def test_cases_include_failures_of_each_validator() -> None:
    """The table above must exercise each fallback, or the equality proves little."""
    messages = " ".join(str(_outcome(r)[1]) for r in CASES.values())
    assert "None is not allowed as an element of" in messages  # reject_null_complex_elements
    assert "but got multiple" in messages  # _validate_one_of_many
    assert "is required" in messages  # _validate_required_primitive_elements


_VALUES: list[Any] = [
    "",
    "x",
    "2020-13-01",
    0,
    -1,
    1.5,
    True,
    None,
    [],
    {},
    [None],
    ["a"],
    {"a": 1},
    {"extension": []},
    {"url": "http://x"},
    [{"url": "http://x", "valueString": "a", "valueCode": "b"}],
    {"coding": [None]},
    [{"valueString": "a"}],
]
_KEYS = [
    "valueString",
    "valueCode",
    "valueInteger",
    "url",
    "extension",
    "_url",
    "deceasedBoolean",
    "deceasedDateTime",
    "multipleBirthBoolean",
    "type",
    "status",
    "coding",
    "name",
    "given",
    "_given",
]


def _paths(node: Any, prefix: tuple = ()) -> Any:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield (*prefix, k)
        yield from _paths(v, (*prefix, k))


def _mutant(rng: random.Random, seed: dict[str, Any]) -> dict[str, Any]:
    resource = copy.deepcopy(seed)
    path = rng.choice([p for p in _paths(resource) if p != ("resourceType",)])
    parent = resource
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    roll = rng.random()
    if roll < 0.5:
        parent[last] = rng.choice(_VALUES)
    elif roll < 0.7 and isinstance(parent, dict):
        del parent[last]
    elif isinstance(parent, dict):
        parent[rng.choice(_KEYS)] = rng.choice(_VALUES)
    else:
        parent.append(rng.choice(_VALUES))
    return resource


@pytest.mark.slow
def test_same_outcome_on_random_mutants() -> None:
    rng = random.Random(20261202)
    seeds = [PATIENT, ENCOUNTER, COVERAGE, *CASES.values()]
    kinds: dict[str, int] = {}
    for _ in range(1500):
        mutant = _mutant(rng, rng.choice(seeds))
        fast, slow = _both(mutant)
        assert fast == slow, mutant
        kinds[fast[0]] = kinds.get(fast[0], 0) + 1
    assert kinds.get("ok", 0) > 100 and kinds.get("ValidationError", 0) > 100, kinds


def test_switched_off_by_the_environment(monkeypatch) -> None:
    from fhir_core.fhirabstractmodel import FHIRAbstractModel

    r4b_speedups.uninstall()
    try:
        monkeypatch.setenv("FHIR_R4B_SPEEDUPS", "false")
        assert r4b_speedups.install() is False
        assert FHIRAbstractModel._validate_one_of_many is not r4b_speedups.validate_one_of_many
    finally:
        monkeypatch.delenv("FHIR_R4B_SPEEDUPS")
        assert r4b_speedups.install() is True


# ------------------------------------------------------------------ the memo of nested elements


def _memo_outcome(resource: dict[str, Any], memo: bool) -> tuple[str, Any]:
    model = get_fhir_model_class(resource["resourceType"])
    try:
        if memo:
            with r4b_speedups.memo():
                built = model.model_validate(resource)
        else:
            built = model.model_validate(resource)
        return "ok", built.model_dump(mode="json")
    except Exception as exc:  # noqa: BLE001 - the comparison covers every kind
        errors = exc.errors(include_url=False) if hasattr(exc, "errors") else None
        return type(exc).__name__, repr(errors if errors is not None else exc)


def test_memo_gives_the_same_outcome_on_random_mutants() -> None:
    """Mutants validated with the memo warm (the seeds and earlier mutants share most of their
    elements with each one) and without it: the same model or the same errors, and the memo
    did answer (hits)."""
    r4b_speedups.install()
    r4b_speedups._memo.clear()
    rng = random.Random(20261206)
    seeds = [PATIENT, ENCOUNTER, COVERAGE, *CASES.values()]
    for seed in seeds:
        _memo_outcome(seed, True)
    hits = 0
    original = r4b_speedups._original["fhir_model_validator"]
    calls = {"n": 0}

    def counting(cls, value, klass):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return original(cls, value, klass)

    r4b_speedups._original["fhir_model_validator"] = counting
    kinds: dict[str, int] = {}
    try:
        for _ in range(1500):
            mutant = _mutant(rng, rng.choice(seeds))
            calls["n"] = 0
            with_memo = _memo_outcome(copy.deepcopy(mutant), True)
            memo_calls = calls["n"]
            calls["n"] = 0
            without = _memo_outcome(copy.deepcopy(mutant), False)
            assert with_memo == without, mutant
            hits += calls["n"] > memo_calls
            kinds[without[0]] = kinds.get(without[0], 0) + 1
    finally:
        r4b_speedups._original["fhir_model_validator"] = original
    assert kinds.get("ok", 0) > 100 and kinds.get("ValidationError", 0) > 100, kinds
    assert hits > 1000, hits


def test_memo_keeps_only_what_orjson_writes_exactly() -> None:
    """A str subclass, a Decimal, a non-str key, a huge integer or a null (NaN is written so)
    inside an element: validated each time, never kept."""
    import math
    from decimal import Decimal

    from fhir.resources.R4B.coding import Coding

    class S(str):
        pass

    r4b_speedups.install()
    r4b_speedups._memo.clear()
    odd = [S("x"), Decimal("1.5"), 2**70, None, math.nan]
    with r4b_speedups.memo():
        for value in odd:
            with contextlib.suppress(Exception):  # only whether it was kept matters here
                r4b_speedups.fhir_model_validator(object, {"code": "c", "extension": [{"url": "http://u", "valueDecimal": value}]}, Coding)
        assert r4b_speedups._memo == {}
        r4b_speedups.fhir_model_validator(object, {"code": "c"}, Coding)
        assert len(r4b_speedups._memo) == 1
    r4b_speedups.fhir_model_validator(object, {"code": "d"}, Coding)  # outside: not kept
    assert len(r4b_speedups._memo) == 1


def test_validate_resource_gives_the_same_issues_with_and_without_the_memo(monkeypatch) -> None:
    """The write path's validation (structure checker, then the R4B model with the memo) on
    mutants, against the same with the memo off: the same issues."""
    from contextlib import nullcontext

    from fhir_server.model import validate

    rng = random.Random(6)
    seeds = [PATIENT, ENCOUNTER, COVERAGE, *CASES.values()]
    r4b_speedups.install()
    for seed in seeds:
        validate.validate_resource(copy.deepcopy(seed))
    modelled = 0
    for _ in range(1000):
        mutant = _mutant(rng, rng.choice(seeds))
        with_memo = validate.validate_resource(copy.deepcopy(mutant))
        with monkeypatch.context() as m:
            m.setattr(validate, "r4b_memo", nullcontext)
            without = validate.validate_resource(copy.deepcopy(mutant))
        assert with_memo == without, mutant
        modelled += not any(i.severity == "error" for i in validate.check_structure(mutant))
    assert modelled > 40, modelled


_SYNTHEA = [
    p for p in (Path(__file__).resolve().parents[3] / "shared", Path("/work/shared")) if (p / "data" / "synthea-10-patients").is_dir()
]


@pytest.mark.skipif(not _SYNTHEA, reason="the shared Synthea sample is not on this machine")
def test_the_synthea_sample_gets_the_same_issues_with_and_without_the_memo(monkeypatch) -> None:
    """7,160 real resources (shared codes, references, extensions: the memo answers many of
    their elements), each also with one element changed to an invalid value."""
    from contextlib import nullcontext

    import orjson

    from fhir_server.model import validate

    r4b_speedups.install()
    r4b_speedups._memo.clear()
    rng = random.Random(7)
    failed = 0
    for path in sorted((_SYNTHEA[0] / "data" / "synthea-10-patients").glob("*.ndjson")):
        for line in path.read_bytes().splitlines()[:150]:
            resource = orjson.loads(line)
            mutant = _mutant(rng, resource)
            for item in (resource, mutant):
                with_memo = validate.validate_resource(copy.deepcopy(item))
                with monkeypatch.context() as m:
                    m.setattr(validate, "r4b_memo", nullcontext)
                    without = validate.validate_resource(copy.deepcopy(item))
                assert with_memo == without, item
                failed += any(i.severity == "error" for i in with_memo)
    assert failed > 100 and len(r4b_speedups._memo) > 100, (failed, len(r4b_speedups._memo))
