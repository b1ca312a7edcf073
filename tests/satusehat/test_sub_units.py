"""Location and Organization sub-units, on SQLite and PostgreSQL: looked up by identifier in
SATUSEHAT before the first create (a facility may have registered them already), created when
missing, the id remembered (never looked up or created again); a sub-unit's partOf rewritten to the
facility or to its parent sub-unit's SATUSEHAT id; the facility's own Organization not sent."""

from __future__ import annotations

import uuid
from typing import Any

from tests.satusehat.conftest import location, put, sync_status
from tests.satusehat.simulator import ORG
from tests.waiting import wait_until


def _org(oid: str, part_of: str | None = None, name: str | None = "Poli") -> dict[str, Any]:
    o: dict[str, Any] = {"resourceType": "Organization", "id": oid, "active": True}
    if name:
        o["name"] = name
    if part_of:
        o["partOf"] = {"reference": f"Organization/{part_of}"}
    return o


def test_sub_units_are_created_once_with_partof_rewritten(fhir, sim):
    put(fhir, _org("pkm", name="Puskesmas Ciracas"))  # the facility itself: SATUSEHAT has it
    put(fhir, _org("poli-umum", "pkm", "Poli Umum"))
    put(fhir, _org("poli-umum-pagi", "poli-umum", "Poli Umum (pagi)"))
    put(fhir, _org("no-name", "pkm", None))
    wait_until(lambda: all(sync_status(fhir, "Organization", o).get("status") == "synced" for o in ("poli-umum", "poli-umum-pagi")))
    assert sync_status(fhir, "Organization", "pkm")["status"] == "not-applicable"
    wait_until(lambda: sync_status(fhir, "Organization", "no-name").get("status") == "held")
    [umum] = sim.by_identifier("Organization", "poli-umum")
    [pagi] = sim.by_identifier("Organization", "poli-umum-pagi")
    assert umum["partOf"] == {"reference": f"Organization/{ORG}"}
    assert pagi["partOf"] == {"reference": f"Organization/{umum['id']}"}
    assert umum["identifier"][0]["system"] == f"http://sys-ids.kemkes.go.id/organization/{ORG}"
    assert sim.count("GET", "Organization") == 2  # looked up before the first create
    assert sim.count("POST", "Organization") == 2
    # a change is a PUT to the id remembered: no look-up, no create
    put(fhir, _org("poli-umum", "pkm", "Poli Umum Lantai 1"))
    wait_until(lambda: sim.by_identifier("Organization", "poli-umum")[0]["name"] == "Poli Umum Lantai 1")
    assert sim.count("GET", "Organization") == 2 and sim.count("POST", "Organization") == 2


def test_a_location_satusehat_has_already_is_adopted_not_created(fhir, sim):
    known = str(uuid.uuid4())
    system = f"http://sys-ids.kemkes.go.id/location/{ORG}"
    # registered in SATUSEHAT by hand, with our local id as its identifier
    sim.add(
        {
            "resourceType": "Location",
            "id": known,
            "meta": {"versionId": "1"},
            "identifier": [{"system": system, "value": "poli1"}],
            "name": "Poli Umum",
        }
    )
    put(fhir, location())
    wait_until(lambda: sync_status(fhir, "Location", "poli1").get("status") == "synced")
    assert sync_status(fhir, "Location", "poli1")["satusehat-id"] == known
    assert sim.count("POST", "Location") == 0 and sim.count("PUT", f"Location/{known}") == 1
    assert len(sim.resources("Location")) == 1
