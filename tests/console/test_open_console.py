"""The console with FHIR_AUTH=none (open, as the API is): landing page, offline docs, finding
a patient, the patient page, imports with a preview, the resource browser, the audit log."""

from __future__ import annotations

import json
import re

import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.console import data
from tests.console.helpers import csrf_of, external_references, post, seed_patient


def test_landing_page_tells_status_version_engine_base_counts_and_links(client):
    seed_patient(client, encounters=2, vitals=1)
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    engine = client.app.state.fhir.db.engine.dialect.name
    assert f'id="engine">{engine}<' in html
    assert 'id="version">0.1.0<' in html
    assert 'id="base">http://testserver/fhir<' in html
    assert re.search(r'data-type="Patient">1<', html) and re.search(r'data-type="Encounter">2<', html)
    for link in ('href="/console"', 'href="/docs"', 'href="/fhir/metadata"'):
        assert link in html


def test_api_docs_load_only_assets_the_server_serves(client):
    html = client.get("/docs").text
    assert "/console/static/swagger-ui/swagger-ui-bundle.js" in html and "/console/static/swagger-ui/swagger-ui.css" in html
    assert external_references(html) == []
    assert '"validatorUrl": null' in html  # Swagger UI would otherwise fetch a badge from its validator site
    for asset in (
        "swagger-ui/swagger-ui-bundle.js",
        "swagger-ui/swagger-ui.css",
        "swagger-ui/LICENSE",
        "console.css",
        "console.js",
        "favicon.svg",
    ):
        assert client.get(f"/console/static/{asset}").status_code == 200, asset
    assert client.get("/redoc").status_code == 404  # ReDoc would load its script from a CDN: off
    assert client.get("/openapi.json").status_code == 200


def test_no_console_page_references_anything_outside_the_server(client):
    pid = seed_patient(client)
    pages = ["/", "/docs", "/console", f"/console?nik={data.NIK}", "/console/login", f"/console/patients/{pid}"]
    pages += ["/console/import", "/console/browse", "/console/browse/Patient", f"/console/browse/Patient/{pid}"]
    pages += ["/console/audit", "/console/clients", "/console/duplicates", "/console/subscriptions"]
    for path in pages:
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code)
        assert external_references(r.text) == [], path
    css = client.get("/console/static/console.css").text
    assert external_references(css) == []


def test_console_pages_forbid_inline_scripts_and_framing(client):
    r = client.get("/console")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "<script>" not in r.text


def test_find_by_nik_and_by_bpjs_number(client):
    pid = seed_patient(client, encounters=0, vitals=0)
    post(client, "Patient", data.patient(identifier=[{"system": "https://fhir.kemkes.go.id/id/nik", "value": "3204150101900001"}]))
    for query in (f"nik={data.NIK}", f"bpjs={data.BPJS}"):
        html = client.get(f"/console?{query}").text
        assert f'href="/console/patients/{pid}"' in html, query
        assert html.count('href="/console/patients/') == 1
    assert "Tidak ada hasil" in client.get("/console?nik=3204150101900009").text


def test_find_by_name_and_birth_date_uses_match_and_shows_the_reasons(client):
    pid = seed_patient(client, encounters=0, vitals=0)
    html = client.get("/console?name=Siti+Rahayu&birthdate=1990-06-05").text
    assert f'href="/console/patients/{pid}"' in html
    assert re.search(r'class="grade (certain|probable|possible)"', html)
    reasons = re.search(r'<ul class="reasons">(.*?)</ul>', html, re.S)
    assert reasons and "birth" in reasons.group(1).lower()


def test_patient_page_shows_nik_facts_coverage_visits_conditions_and_a_chart(client):
    pid = seed_patient(client, encounters=3, vitals=4)
    html = client.get(f"/console/patients/{pid}").text
    nik = html[html.index('id="nik-facts"') :]
    assert ("Jawa Barat" in nik and "Kabupaten Bandung" in nik) or "Bandung" in nik
    assert nik.count("sesuai") >= 2 and "tidak sesuai" not in nik[: nik.index("</section>")]  # sex and birth date agree
    coverage = html[html.index('id="coverage"') :]
    assert "Aktif" in coverage[: coverage.index("</section>")]
    timeline = html[html.index('id="encounters"') :]
    assert timeline.index("2026-03-03") < timeline.index("2026-03-01")  # newest first
    assert "Essential (primary) hypertension" in html
    chart = re.search(r'<svg class="chart".*?</svg>', html, re.S)
    assert chart and chart.group(0).count("<circle") == 4 and "<polyline" in chart.group(0)


def test_chart_takes_decimal_values_and_blood_pressure_components(client):
    pid = post(client, "Patient", data.patient())
    post(client, "Observation", data.heart_rate(pid, 1, 36.6) | {"code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]}})
    bp = data.heart_rate(pid, 2, 0)
    del bp["valueQuantity"]
    bp["code"] = {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]}
    bp["component"] = [
        {"code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "valueQuantity": {"value": value, "unit": "mm[Hg]"}}
        for code, value in (("8480-6", 120.5), ("8462-4", 80))
    ]
    post(client, "Observation", bp)
    html = client.get(f"/console/patients/{pid}").text
    charts = re.findall(r'<svg class="chart".*?</svg>', html, re.S)
    assert len(charts) == 3
    text = " ".join(charts)
    assert "36.6" in text and "120.5" in text and "80" in text


def test_patient_page_says_when_it_charts_only_part_of_the_readings(client, monkeypatch):
    from fhir_server.console import routes

    pid = seed_patient(client, encounters=0, vitals=3)
    assert 'id="vitals-more"' not in client.get(f"/console/patients/{pid}").text
    monkeypatch.setattr(routes, "VITALS_SHOWN", 2)
    html = client.get(f"/console/patients/{pid}").text
    assert 'id="vitals-more"' in html and html.count("<circle") == 2


def test_patient_page_tells_when_the_record_disagrees_with_its_nik(client):
    pid = post(client, "Patient", data.patient(gender="male", birthDate="1990-06-06"))
    html = client.get(f"/console/patients/{pid}").text
    nik = html[html.index('id="nik-facts"') : html.index('id="coverage"')]
    assert nik.count("tidak sesuai") == 2


def test_english_is_one_click_away(client):
    r = client.get("/console/lang/en?next=/console", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console"
    client.cookies.set("console_lang", "en")
    try:
        assert "Find a patient" in client.get("/console").text
    finally:
        client.cookies.delete("console_lang")
    assert "Cari pasien" in client.get("/console").text


def test_import_preview_shows_the_fhir_result_and_changes_then_imports(client):
    payload = (data.FIXTURES / "dukcapil_call_nik.json").read_text()
    form = client.get("/console/import").text
    fields = {"csrf": csrf_of(form), "kind": "dukcapil", "payload": payload}
    preview = client.post("/console/import", data=fields)
    assert preview.status_code == 200
    assert "Data baru" in preview.text and "SITI RAHAYU" in preview.text and 'id="do-import"' in preview.text
    assert client.get("/fhir/Patient").json().get("total", 0) == 0  # a preview writes nothing
    done = client.post("/console/import/run", data=fields)
    assert done.status_code == 200 and 'id="import-done"' in done.text
    found = client.get(f"/fhir/Patient?identifier=https://fhir.kemkes.go.id/id/nik|{data.NIK}").json()
    assert found["total"] == 1
    # the record exists now: the preview names it and what the import would change
    changed = payload.replace("JL. MAWAR NO. 7", "JL. MELATI NO. 9")
    again = client.post("/console/import", data={**fields, "payload": changed}).text
    assert f"Patient/{found['entry'][0]['resource']['id']}" in again
    changes = again[again.index('class="list changes"') :]
    assert "address" in changes and "JL. MELATI NO. 9" in changes and "JL. MAWAR NO. 7" in changes


def test_import_takes_an_uploaded_file(client):
    token = csrf_of(client.get("/console/import").text)
    upload = {"file": ("peserta.json", (data.FIXTURES / "dukcapil_call_nik.json").read_bytes(), "application/json")}
    r = client.post("/console/import", data={"csrf": token, "kind": "dukcapil", "payload": ""}, files=upload)
    assert r.status_code == 200 and "SITI RAHAYU" in r.text and "Data baru" in r.text


def test_import_of_bad_json_is_a_400_page_not_a_500(client):
    form = client.get("/console/import").text
    r = client.post("/console/import", data={"csrf": csrf_of(form), "kind": "dukcapil", "payload": "{not json"})
    assert r.status_code == 400 and "JSON" in r.text


def test_console_json_with_a_repeated_property_is_refused_naming_it(client):
    """The console reads what a person typed with the API's rule (jsonio.loads_client)."""
    form = client.get("/console/import").text
    r = client.post("/console/import", data={"csrf": csrf_of(form), "kind": "dukcapil", "payload": '{"a":1,"a":2}'})
    assert r.status_code == 400 and "&#39;a&#39; appears more than once" in r.text
    pid = seed_patient(client, encounters=0, vitals=0)
    token = csrf_of(client.get(f"/console/browse/Patient/{pid}").text)
    text = f'{{"resourceType":"Patient","id":"{pid}","gender":"male","gender":"female"}}'
    r = client.post(f"/console/browse/Patient/{pid}", data={"csrf": token, "resource": text, "action": "save"})
    assert r.status_code == 400 and "&#39;gender&#39; appears more than once" in r.text
    assert client.get(f"/fhir/Patient/{pid}").json()["gender"] == "female"  # nothing saved


def test_forms_without_the_csrf_token_are_refused(client):
    client.get("/console/import")
    r = client.post("/console/import", data={"kind": "dukcapil", "payload": "{}"})
    assert r.status_code == 403
    r = client.post("/console/import", data={"kind": "dukcapil", "payload": "{}", "csrf": "forged"})
    assert r.status_code == 403


def test_resource_browser_searches_shows_validates_and_saves(client):
    pid = seed_patient(client, encounters=0, vitals=0)
    html = client.get("/console/browse/Patient?birthdate=1990-06-05").text
    assert 'name="birthdate"' in html and 'name="identifier"' in html  # the form comes from the search parameters
    assert f'href="/console/browse/Patient/{pid}"' in html
    assert f'href="/console/browse/Patient/{pid}"' not in client.get("/console/browse/Patient?birthdate=1991-01-01").text
    page = client.get(f"/console/browse/Patient/{pid}").text
    token = csrf_of(page)
    resource = client.get(f"/fhir/Patient/{pid}").json()
    bad = {**resource, "gender": "laki-laki"}
    r = client.post(f"/console/browse/Patient/{pid}", data={"csrf": token, "resource": json.dumps(bad), "action": "save"})
    assert r.status_code == 422 and 'id="issues"' in r.text
    assert client.get(f"/fhir/Patient/{pid}").json()["gender"] == "female"  # nothing saved
    good = {**resource, "gender": "female", "birthDate": "1990-06-05", "active": True}
    r = client.post(f"/console/browse/Patient/{pid}", data={"csrf": token, "resource": json.dumps(good), "action": "validate"})
    assert r.status_code == 200 and 'id="valid"' in r.text
    assert client.get(f"/fhir/Patient/{pid}").json().get("active") is None  # validate only
    r = client.post(f"/console/browse/Patient/{pid}", data={"csrf": token, "resource": json.dumps(good), "action": "save"})
    assert r.status_code == 200 and 'id="saved"' in r.text
    stored = client.get(f"/fhir/Patient/{pid}").json()
    assert stored["active"] is True and stored["meta"]["versionId"] == "2"


def test_resource_browser_pages_through_results(client):
    pid = post(client, "Patient", data.patient())
    for day in range(1, 26):
        post(client, "Encounter", data.encounter(pid, day))
    first = client.get("/console/browse/Encounter").text
    assert first.count('href="/console/browse/Encounter/') == 20
    next_query = re.search(r'href="\?([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    second = client.get(f"/console/browse/Encounter?{next_query}").text
    assert second.count('href="/console/browse/Encounter/') == 5 and 'rel="next"' not in second
    ids = set(re.findall(r'href="/console/browse/Encounter/([^"]+)"', first + second))
    assert len(ids) == 25


def test_unknown_things_are_404_pages(client):
    assert client.get("/console/browse/Nope").status_code == 404
    assert client.get("/console/patients/does-not-exist").status_code == 404


@pytest.mark.slow
def test_console_off_keeps_the_landing_page_and_docs(tmp_path):
    from fastapi.testclient import TestClient

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'off.sqlite3'}", console=False))
    with TestClient(app) as c:
        assert c.get("/console").status_code == 404
        assert c.get("/console/login").status_code == 404
        landing = c.get("/")
        assert landing.status_code == 200 and 'href="/console"' not in landing.text
        assert c.get("/docs").status_code == 200
