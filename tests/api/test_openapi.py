"""The OpenAPI document behind /docs: every operation has an id of its own (a route with two
methods gave both the same id, and /docs showed one of them twice)."""

from __future__ import annotations

import warnings


def test_every_operation_id_is_unique(client):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FastAPI warns on a duplicate id
        spec = client.app.openapi()
    ids = [op["operationId"] for path in spec["paths"].values() for op in path.values() if isinstance(op, dict) and "operationId" in op]
    assert len(ids) == len(set(ids))
    assert {"get", "post"} <= set(spec["paths"]["/fhir/$export"])
    assert {"get", "post"} <= set(spec["paths"]["/fhir/{res_type}/{res_id}/${name}"])
