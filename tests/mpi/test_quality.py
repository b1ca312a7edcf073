"""The matcher measured on a labelled synthetic population (tests/mpi/synthetic.py): the targets
of issue 18. The figures are printed (pytest -s) for docs/mpi.md."""

from __future__ import annotations

import pytest

from fhir_server.mpi.scoring import CERTAIN, PROBABLE
from tests.mpi.quality import evaluate
from tests.mpi.synthetic import population


@pytest.mark.parametrize("seed", [18, 2024])
def test_precision_and_recall_targets_on_a_synthetic_population(seed):
    pop = population(seed, 3000)
    kinds = {r.kind for r in pop.records}
    assert {"duplicate", "twin", "namesake", "shared-nik", "child", "newborn"} <= kinds
    figures = evaluate(pop)
    print(f"\nseed {seed}\n{figures.summary()}")
    assert figures.records > 4500 and figures.true_pairs > 1500
    assert figures.precision(CERTAIN) >= 0.995, figures.false_certain[:5]
    assert figures.recall(PROBABLE) >= 0.95, figures.missed[:20]
    assert figures.newborn_mother_pairs > 100
    assert figures.newborn_mother_above_possible == 0
