"""Race safety lives in the database: parallel conditional creates make exactly one resource."""

from __future__ import annotations

import asyncio
import copy
from concurrent.futures import ThreadPoolExecutor

from fhir_server.errors import FhirError
from fhir_server.service.access import OPEN
from fhir_server.service.pipeline import Interaction, Pipeline
from fhir_server.storage.group_commit import BlockingWrites
from tests.api.test_transaction import visit_bundle

NIK = "https://fhir.kemkes.go.id/id/nik"
PATIENT = {"resourceType": "Patient", "identifier": [{"system": NIK, "value": "3204154506900003"}], "gender": "female"}


def _patients(state) -> list[str]:
    result = state.search.run("http://testserver/fhir", "Patient", [("identifier", f"{NIK}|3204154506900003")], strict=True)
    return [i for _, i, _ in result.matches]


def test_twenty_parallel_conditional_creates_make_one_patient(client):
    state = client.app.state.fhir

    def attempt(_: int) -> tuple[int, str]:
        with state.db.write() as conn:  # each thread in a write transaction of its own
            result = state.conditional.create_in(conn, "Patient", copy.deepcopy(PATIENT), f"identifier={NIK}|3204154506900003", None)
        return result.status, result.stored.res_id

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(attempt, range(20)))
    ids = {res_id for _, res_id in outcomes}
    assert len(ids) == 1
    assert sorted(status for status, _ in outcomes) == [200] * 19 + [201]
    assert _patients(state) == list(ids)


def test_parallel_transactions_with_the_same_patient_make_one_patient(client):
    state = client.app.state.fhir
    # each thread stands for a worker: the pipeline with the blocking write path (no event loop)
    pipeline = Pipeline(state.services, BlockingWrites(state.db), audit_writes=False)

    def attempt(_: int) -> str:
        for _ in range(5):  # a transaction that lost the race answers 409: clients retry
            try:
                asyncio.run(pipeline.handle(Interaction("transaction", "http://testserver/fhir", OPEN, body=visit_bundle())))
                return "ok"
            except FhirError as exc:
                if exc.status != 409:
                    raise
        return "gave up"

    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(attempt, range(10)))
    assert outcomes == ["ok"] * 10
    assert len(_patients(state)) == 1
    encounters = state.search.run("http://testserver/fhir", "Encounter", [("_count", "100")], strict=True).matches
    assert len(encounters) == 10
