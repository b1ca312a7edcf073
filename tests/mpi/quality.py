"""Precision and recall of the matcher on a labelled population, found the way the server finds
them: candidates by shared blocking keys (with the server's per-key limit), then scored."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations

from fhir_server.mpi.blocking import probe_keys, stored_keys
from fhir_server.mpi.features import extract
from fhir_server.mpi.scoring import CERTAIN, GRADES, POSSIBLE, PROBABLE, score_pair
from tests.mpi.synthetic import Population

PER_KEY_LIMIT = 200


@dataclass
class Figures:
    records: int = 0
    true_pairs: int = 0
    candidate_pairs: int = 0
    #: pairs graded g, and how many of them are one person
    graded: dict[str, int] = field(default_factory=lambda: dict.fromkeys(GRADES, 0))
    correct: dict[str, int] = field(default_factory=lambda: dict.fromkeys(GRADES, 0))
    #: true pairs found at each grade or better
    found: dict[str, int] = field(default_factory=lambda: dict.fromkeys(GRADES, 0))
    newborn_mother_pairs: int = 0
    newborn_mother_above_possible: int = 0
    false_certain: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)
    missed: list[tuple[str, str]] = field(default_factory=list)

    def precision(self, grade: str) -> float:
        return self.correct[grade] / self.graded[grade] if self.graded[grade] else 1.0

    def recall(self, grade: str) -> float:
        return self.found[grade] / self.true_pairs if self.true_pairs else 1.0

    def summary(self) -> str:
        lines = [f"{self.records} records, {self.true_pairs} true duplicate pairs, {self.candidate_pairs} candidate pairs scored"]
        for g in GRADES:
            lines.append(
                f"{g:9s} pairs {self.graded[g]:6d}  precision {self.precision(g):.4f}  recall at {g} or better {self.recall(g):.4f}"
            )
        lines.append(f"newborn-mother pairs {self.newborn_mother_pairs}, above possible: {self.newborn_mother_above_possible}")
        return "\n".join(lines)


def evaluate(pop: Population) -> Figures:
    features = [extract(r.resource) for r in pop.records]
    labels = [r.person for r in pop.records]
    blocks: dict[str, list[int]] = defaultdict(list)
    for i, f in enumerate(features):
        for key in stored_keys(f):
            blocks[key].append(i)
    pairs: set[tuple[int, int]] = set()
    for i, f in enumerate(features):
        for key in probe_keys(f):
            for j in blocks.get(key, ())[:PER_KEY_LIMIT]:
                if j != i:
                    pairs.add((min(i, j), max(i, j)))

    fig = Figures(records=len(features), candidate_pairs=len(pairs))
    by_person: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_person[label].append(i)
    true_pairs = {(a, b) for members in by_person.values() for a, b in combinations(sorted(members), 2)}
    fig.true_pairs = len(true_pairs)
    rank = {CERTAIN: 0, PROBABLE: 1, POSSIBLE: 2}
    found_grade: dict[tuple[int, int], str] = {}
    for i, j in pairs:
        m = score_pair(features[i], features[j])
        if m.grade is None:
            continue
        same = labels[i] == labels[j]
        fig.graded[m.grade] += 1
        fig.correct[m.grade] += same
        if same:
            found_grade[(i, j)] = m.grade
        elif m.grade == CERTAIN:
            fig.false_certain.append((pop.records[i].kind, pop.records[j].kind, m.reasons))
    for g in GRADES:
        fig.found[g] = sum(1 for p in true_pairs if p in found_grade and rank[found_grade[p]] <= rank[g])
    fig.missed = [
        (str(pop.records[i].resource.get("name")), str(pop.records[j].resource.get("name")))
        for i, j in true_pairs
        if (i, j) not in found_grade or found_grade[(i, j)] == POSSIBLE
    ]

    # every newborn against its mother's records, whether blocking paired them or not
    index_of = {id(r): k for k, r in enumerate(pop.records)}
    persons = {p.pid: p for p in pop.persons}
    for rec in pop.records:
        if rec.kind == "newborn" or (rec.kind == "duplicate" and persons[rec.person].newborn_of):
            mother_pid = rec.related or next(r.related for r in persons[rec.person].records if r.related)
            for mother_rec in persons[mother_pid].records if mother_pid else ():
                fig.newborn_mother_pairs += 1
                m = score_pair(features[index_of[id(rec)]], features[index_of[id(mother_rec)]])
                if m.grade in (CERTAIN, PROBABLE):
                    fig.newborn_mother_above_possible += 1
    return fig
