"""The Python FHIR clients integrators use, unchanged, against a real server on a loopback port.

fhirpy (2.3) and fhirclient (4.x) build their URLs, headers and bodies their own way: a
transaction to ``base/``, ``PATCH`` as the changed members with ``Content-Type:
application/json``, conditional create as ``POST [type]?search``, paging by the ``next``
links. The server runs in uvicorn (the server the CLI runs) in a thread, on both backends.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import uvicorn
from fhirclient import client as fhirclient_client
from fhirclient.models.bundle import Bundle as FcBundle
from fhirclient.models.patient import Patient as FcPatient
from fhirclient.server import FHIRNotFoundException
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.conftest import BACKENDS, database

NIK = "https://fhir.kemkes.go.id/id/nik"
TIMEOUT = 60  # seconds a request may take on a loaded machine


@dataclass
class RunningServer:
    base: str
    server: uvicorn.Server
    thread: threading.Thread


def _serve(settings: Settings) -> RunningServer:
    """uvicorn on 127.0.0.1, port chosen by the kernel (no race for a free port)."""
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning", access_log=False, loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return RunningServer(f"http://127.0.0.1:{port}/fhir", server, thread)


@pytest.fixture(scope="module", params=BACKENDS)
def base(request, tmp_path_factory) -> Iterator[str]:
    folder: Path = tmp_path_factory.mktemp("clients")
    with database(request.param, folder) as url:
        running = _serve(Settings(database_url=url, export_dir=str(folder / "export"), default_count=50))
        try:
            yield running.base
        finally:
            running.server.should_exit = True
            running.thread.join(30)


def _family() -> str:
    """A family name of this test's own, so tests sharing the server do not see each other's data."""
    return "Uji" + uuid.uuid4().hex[:10]


def _nik() -> str:
    return str(uuid.uuid4().int)[:16]


# ----------------------------------------------------------------------------- fhirpy


@pytest.fixture
def fhirpy(base) -> SyncFHIRClient:
    # redirects not followed: requests re-sends a POST on a 307, but many HTTP clients do not
    return SyncFHIRClient(base, requests_config={"timeout": TIMEOUT, "allow_redirects": False})


def test_fhirpy_create_read_update_delete(fhirpy):
    family = _family()
    patient = fhirpy.resource("Patient", name=[{"family": family, "given": ["Siti"]}], gender="female", birthDate="1990-06-05")
    patient.save()
    assert patient.id and patient.meta.versionId == "1"

    read = fhirpy.reference("Patient", patient.id).to_resource()
    assert read.name[0].family == family and read.gender == "female"

    read["gender"] = "other"
    read.save()
    assert read.meta.versionId == "2"
    assert fhirpy.resources("Patient").search(_id=patient.id).get().gender == "other"

    read.delete()
    with pytest.raises(ResourceNotFound):
        fhirpy.reference("Patient", patient.id).to_resource()


def test_fhirpy_search_pages_through_next_links(fhirpy):
    family = _family()
    for n in range(7):
        fhirpy.resource("Patient", name=[{"family": family}], birthDate=f"2000-01-0{n + 1}").save()
    search = fhirpy.resources("Patient").search(family=family).sort("birthdate").limit(3)
    assert len(search.fetch()) == 3
    found = search.fetch_all()
    assert [p.birthDate for p in found] == [f"2000-01-0{n + 1}" for n in range(7)]
    assert search.count() == 7
    assert fhirpy.resources("Patient").search(family=family).first().birthDate == "2000-01-01"


def test_fhirpy_patch_is_a_merge_patch(fhirpy):
    patient = fhirpy.resource("Patient", name=[{"family": _family()}], gender="female", birthDate="1990-06-05")
    patient.save()
    patient.patch(active=False, gender="male")
    stored = fhirpy.reference("Patient", patient.id).to_resource()
    assert (stored.active, stored.gender, stored.birthDate, stored.meta.versionId) == (False, "male", "1990-06-05", "2")

    fhirpy.patch("Patient", patient.id, birthDate=None)  # null removes
    assert "birthDate" not in fhirpy.reference("Patient", patient.id).to_resource()


def test_fhirpy_patch_with_an_invalid_result_is_refused(fhirpy):
    patient = fhirpy.resource("Patient", name=[{"family": _family()}], gender="female")
    patient.save()
    with pytest.raises(OperationOutcome) as refused:
        fhirpy.patch("Patient", patient.id, gender="boy")
    assert refused.value.resource["resourceType"] == "OperationOutcome"
    assert fhirpy.reference("Patient", patient.id).to_resource().meta.versionId == "1"


def test_fhirpy_conditional_patch_update_and_get_or_create(fhirpy):
    nik = _nik()
    identifier = f"{NIK}|{nik}"
    body = fhirpy.resource("Patient", identifier=[{"system": NIK, "value": nik}], name=[{"family": _family()}])
    created, was_created = fhirpy.resources("Patient").search(identifier=identifier).get_or_create(body)
    again, created_again = fhirpy.resources("Patient").search(identifier=identifier).get_or_create(body)
    assert (was_created, created_again) == (True, False)
    assert again.id == created.id
    assert fhirpy.resources("Patient").search(identifier=identifier).count() == 1

    patched = fhirpy.resources("Patient").search(identifier=identifier).patch(active=True)
    assert patched.id == created.id and patched.active is True

    updated, was_created = (
        fhirpy.resources("Patient")
        .search(identifier=identifier)
        .update(fhirpy.resource("Patient", identifier=[{"system": NIK, "value": nik}], gender="male"))
    )
    assert (updated.id, updated.gender, was_created) == (created.id, "male", False)


def test_fhirpy_transaction_to_the_base(fhirpy):
    family = _family()
    pat = f"urn:uuid:{uuid.uuid4()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": pat,
                "resource": {"resourceType": "Patient", "name": [{"family": family}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                    "subject": {"reference": pat},
                },
                "request": {"method": "POST", "url": "Encounter"},
            },
        ],
    }
    result = fhirpy.execute("/", method="post", data=bundle)  # fhirpy posts to "base/"
    assert result["type"] == "transaction-response"
    assert [e["response"]["status"][:3] for e in result["entry"]] == ["201", "201"]
    patient = fhirpy.resources("Patient").search(family=family).get()
    encounters = fhirpy.resources("Encounter").search(subject=f"Patient/{patient.id}").fetch_all()
    assert len(encounters) == 1


def test_fhirpy_operation_and_metadata(fhirpy):
    patient = fhirpy.resource("Patient", name=[{"family": _family()}])
    patient.save()
    everything = fhirpy.execute(f"Patient/{patient.id}/$everything", method="get")
    assert everything["resourceType"] == "Bundle" and everything["entry"][0]["resource"]["id"] == patient.id
    assert fhirpy.execute("metadata", method="get")["fhirVersion"] == "4.0.1"


# ----------------------------------------------------------------------------- fhirclient


@pytest.fixture
def smart(base):
    server = fhirclient_client.FHIRClient(settings={"app_id": "fhir-server-id-tests", "api_base": base}).server
    server.session.max_redirects = 0  # a redirect is a failure (see the fhirpy fixture)
    return server


def test_fhirclient_create_read_update_delete(smart):
    family = _family()
    created = FcPatient({"name": [{"family": family, "given": ["Ayu"]}], "gender": "female"}).create(smart)
    pid = created["id"]
    patient = FcPatient.read(pid, smart)
    assert patient.name[0].family == family and patient.meta.versionId == "1"

    patient.gender = "other"
    updated = patient.update()
    assert updated["meta"]["versionId"] == "2"
    assert FcPatient.read(pid, smart).gender == "other"

    patient.delete()
    with pytest.raises((FHIRNotFoundException, requests.HTTPError)):
        FcPatient.read(pid, smart)


def test_fhirclient_search_pages_through_next_links(smart):
    family = _family()
    for n in range(5):
        FcPatient({"name": [{"family": family}], "birthDate": f"1999-02-0{n + 1}"}).create(smart)
    search = FcPatient.where(struct={"family": family, "_count": "2", "_sort": "birthdate"})
    pages = list(search.perform_iter(smart))
    assert len(pages) == 3
    assert [p.birthDate.isostring for p in search.perform_resources_iter(smart)] == [f"1999-02-0{n + 1}" for n in range(5)]


def test_fhirclient_transaction_bundle_to_the_base(smart):
    family = _family()
    bundle = FcBundle(
        {
            "type": "transaction",
            "entry": [
                {"resource": {"resourceType": "Patient", "name": [{"family": family}]}, "request": {"method": "POST", "url": "Patient"}},
                {"resource": {"resourceType": "Patient", "name": [{"family": family}]}, "request": {"method": "POST", "url": "Patient"}},
            ],
        }
    )
    result = bundle.create(smart)  # fhirclient posts a transaction Bundle to "base/"
    assert result["type"] == "transaction-response"
    assert len(list(FcPatient.where(struct={"family": family}).perform_resources_iter(smart))) == 2


def test_fhirclient_reads_the_capability_statement(smart):
    smart.get_capability(force=True)
    assert smart.capabilityStatement.fhirVersion == "4.0.1"
