"""A create extracts its index rows before the transaction, from the resource stamped with
version 1 and time 0 (ResourceService.prepare_create): the rows must not depend on either."""

from __future__ import annotations

import pytest
from searchsamples import COVERAGE, ENCOUNTER, PATIENT

from fhir_server.search.extract import extract_index
from fhir_server.service.resources import stamp


@pytest.mark.parametrize("resource", [PATIENT, ENCOUNTER, COVERAGE], ids=lambda r: r["resourceType"])
def test_index_rows_do_not_depend_on_version_or_time_stamp(resource):
    provisional = extract_index(stamp(resource, "x1", 1, 0))
    final = extract_index(stamp(resource, "x1", 7, 1_764_633_600_123_456))
    assert provisional == final
    assert provisional.count() > 5
