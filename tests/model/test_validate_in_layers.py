"""Validation one layer at a time over many resources (``validate_resources``, a transaction
Bundle's entries): the same issues as each resource checked on its own, layer after layer."""

from __future__ import annotations

import copy
import random
from typing import Any

from fhir_server.model import validate
from fhir_server.model.structure import check_structure
from tests.model.test_r4b_speedups import CASES, _mutant
from tests.search.searchsamples import COVERAGE, ENCOUNTER, PATIENT


def _one_by_one(resource: dict[str, Any]) -> list[Any]:
    """What the write path always did for one resource: the structure checker, then (only when
    it found no error) the R4B model, without the memo."""
    issues = check_structure(resource)
    if any(i.severity in ("error", "fatal") for i in issues):
        return issues
    return issues + validate.model_issues(resource)


def test_the_same_issues_as_each_resource_on_its_own(monkeypatch) -> None:
    rng = random.Random(17)
    seeds = [PATIENT, ENCOUNTER, COVERAGE, *CASES.values()]
    # valid resources and mutants (most of them invalid) mixed, as in a Bundle with bad entries
    mutants = [_mutant(rng, seed) if rng.random() < 0.5 else copy.deepcopy(seed) for seed in (rng.choice(seeds) for _ in range(400))]
    expected = [_one_by_one(copy.deepcopy(m)) for m in mutants]
    modelled: list[str] = []
    real = validate.model_issues

    def counted(resource: dict[str, Any], *, memo: bool = False) -> list[Any]:
        modelled.append(resource.get("id", ""))
        return real(resource, memo=memo)

    monkeypatch.setattr(validate, "model_issues", counted)
    found = validate.validate_resources([copy.deepcopy(m) for m in mutants])
    assert found == expected
    clean = sum(not any(i.severity == "error" for i in issues) for issues in expected)
    # both kinds are there, and the R4B model ran on exactly the ones the structure checker passed
    assert 40 < clean < 360, clean
    assert len(modelled) == sum(not any(i.severity == "error" for i in check_structure(m)) for m in mutants)


def test_the_model_check_is_skipped_when_switched_off(monkeypatch) -> None:
    monkeypatch.setattr(validate, "model_issues", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    assert validate.validate_resources([copy.deepcopy(PATIENT), copy.deepcopy(ENCOUNTER)], r4b_model=False) == [[], []]
