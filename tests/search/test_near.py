"""``Location?near=[latitude]|[longitude]|[distance]|[units]`` (R4 location.html#positional).

SATUSEHAT requires every Location's ``position``; a client looking for the facilities around a
point sends ``near``. Before, it was "not supported (ignored)": a lenient search answered every
Location. Distances are checked against the great-circle (haversine) distance."""

from __future__ import annotations

import math
import random

import pytest
import sqlalchemy as sa

from fhir_server.search.near import KM_PER_DEGREE
from fhir_server.storage import migrate
from tests.conftest import BACKENDS, match_ids, migrated_database, put_resource, store_raw

H = {"Content-Type": "application/fhir+json"}
MONAS = (-6.1754, 106.8272)
#: name -> (latitude, longitude)
PLACES = {
    "pkm-menteng": (-6.1963, 106.8317),  # ~2.4 km from Monas
    "pkm-tanjung-priok": (-6.1100, 106.8800),  # ~9.3 km
    "rs-bandung": (-6.9175, 107.6191),  # ~120 km
    "rs-surabaya": (-7.2575, 112.7521),  # ~665 km
}


def _haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    (lat1, lon1), (lat2, lon2) = (tuple(map(math.radians, p)) for p in (a, b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(h))


def _location(lid: str, position: tuple[float, float] | None) -> dict:
    loc = {"resourceType": "Location", "id": lid, "name": lid, "status": "active"}
    if position:
        loc["position"] = {"latitude": position[0], "longitude": position[1]}
    return loc


def _near(client, value: str, res_type: str = "Location", **headers) -> list[str]:
    r = client.get(
        f"/fhir/{res_type}", params={"near" if res_type == "Location" else "location.near": value, "_count": "500"}, headers=headers
    )
    assert r.status_code == 200, r.text
    return sorted(e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match")


@pytest.fixture
def places(client):
    for lid, position in PLACES.items():
        put_resource(client, _location(lid, position))
    put_resource(client, _location("no-position", None))
    return client


def test_locations_within_the_distance(places):
    lat, lon = MONAS
    assert _near(places, f"{lat}|{lon}|5|km") == ["pkm-menteng"]
    assert _near(places, f"{lat}|{lon}|10") == ["pkm-menteng", "pkm-tanjung-priok"]  # km by default
    assert _near(places, f"{lat}|{lon}|150|km") == ["pkm-menteng", "pkm-tanjung-priok", "rs-bandung"]
    assert _near(places, f"{lat}|{lon}|150000|m") == ["pkm-menteng", "pkm-tanjung-priok", "rs-bandung"]
    assert _near(places, f"{lat}|{lon}|100|[mi_i]") == ["pkm-menteng", "pkm-tanjung-priok", "rs-bandung"]  # 161 km
    assert _near(places, f"{lat}|{lon}|1000") == sorted(PLACES)
    assert _near(places, f"{lat}|{lon}") == ["pkm-menteng"]  # the server's own distance: 5 km
    # two points: either
    sby = PLACES["rs-surabaya"]
    assert _near(places, f"{lat}|{lon}|5,{sby[0]}|{sby[1]}|1") == ["pkm-menteng", "rs-surabaya"]


def _distances(client, params: dict) -> dict[str, dict | None]:
    r = client.get("/fhir/Location", params={**params, "_count": "500"})
    assert r.status_code == 200, r.text
    found = {}
    for e in r.json().get("entry", []):
        ext = [x for x in e["search"].get("extension", []) if x["url"] == "http://hl7.org/fhir/StructureDefinition/location-distance"]
        found[e["resource"]["id"]] = ext[0]["valueDistance"] if ext else None
    return found


def test_each_match_carries_its_distance_from_the_nearest_point(places):
    # R4's location-distance extension on Bundle.entry.search: a client can order the places itself
    lat, lon = MONAS
    sby = PLACES["rs-surabaya"]
    for params in ({"near": f"{lat}|{lon}|150"}, {"near": f"{lat}|{lon}|150", "_elements": "name"}):
        found = _distances(places, params)
        assert sorted(found) == ["pkm-menteng", "pkm-tanjung-priok", "rs-bandung"]
        for lid, distance in found.items():
            assert distance["unit"] == "km" and distance["system"] == "http://unitsofmeasure.org" and distance["code"] == "km"
            assert distance["value"] == pytest.approx(_haversine_km(MONAS, PLACES[lid]), abs=0.001)
    two_points = _distances(places, {"near": f"{lat}|{lon}|5,{sby[0]}|{sby[1]}|1"})
    assert two_points["pkm-menteng"]["value"] == pytest.approx(_haversine_km(MONAS, PLACES["pkm-menteng"]), abs=0.001)
    assert two_points["rs-surabaya"]["value"] == 0
    assert set(_distances(places, {"name": "rs-bandung"}).values()) == {None}  # no near: no distance


def test_missing(places):
    everywhere = sorted(PLACES)
    assert match_ids(places, "/fhir/Location?near:missing=false") == everywhere
    assert match_ids(places, "/fhir/Location?near:missing=true") == ["no-position"]


def test_moves_and_deletes_are_followed(places):
    lat, lon = MONAS
    put_resource(places, _location("rs-bandung", (-6.1800, 106.8300)))  # moved next to Monas
    assert "rs-bandung" in _near(places, f"{lat}|{lon}|5")
    put_resource(places, _location("rs-bandung", None))  # position removed
    assert "rs-bandung" not in _near(places, f"{lat}|{lon}|1000")
    assert places.delete("/fhir/Location/pkm-menteng").status_code in (200, 204)
    assert _near(places, f"{lat}|{lon}|5") == []


def test_a_chain_finds_the_encounters_at_the_locations_near(places):
    for eid, where in (("e-near", "pkm-menteng"), ("e-far", "rs-surabaya")):
        encounter = {
            "resourceType": "Encounter",
            "id": eid,
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "location": [{"location": {"reference": f"Location/{where}"}}],
        }
        put_resource(places, encounter)
    assert _near(places, f"{MONAS[0]}|{MONAS[1]}|5", res_type="Encounter") == ["e-near"]


def test_the_distance_agrees_with_the_great_circle(client):
    """Random Locations around a point in Indonesia: found exactly when their great-circle distance
    is within the search's, but for those within 1 % of the edge (the projection's error)."""
    rng = random.Random(20)
    center = (-2.5, 118.0)
    points = {f"r{i}": (center[0] + rng.uniform(-4, 4), center[1] + rng.uniform(-4, 4)) for i in range(120)}
    for lid, position in points.items():
        put_resource(client, _location(lid, position))
    for km in (50, 150, 300):
        found = set(_near(client, f"{center[0]}|{center[1]}|{km}"))
        for lid, position in points.items():
            d = _haversine_km(center, position)
            if abs(d - km) > km / 100:
                assert (lid in found) == (d <= km), (lid, d, km)


@pytest.mark.parametrize(
    "value, why",
    [
        ("91|0|5", "latitude must be within"),
        ("0|181|5", "longitude within"),
        ("abc|0", "decimal degrees"),
        ("1", "latitude|longitude"),
        ("1|2|3|furlong", "units must be"),
        ("1|2|-3", "distance must be above 0"),
        ("1|2|x", "distance must be a number"),
        ("1|2|30000", "at most"),
    ],
)
def test_a_malformed_value_is_400_lenient_or_strict(client, value, why):
    for headers in ({}, {"Prefer": "handling=strict"}):
        r = client.get("/fhir/Location", params={"near": value}, headers=headers)
        assert r.status_code == 400, r.text
        assert why in r.json()["issue"][0]["diagnostics"]


def test_the_capability_statement_declares_near(client):
    location = next(r for r in client.get("/fhir/metadata").json()["rest"][0]["resource"] if r["type"] == "Location")
    near = next(p for p in location["searchParam"] if p["name"] == "near")
    assert near["type"] == "special" and near["definition"] == "http://hl7.org/fhir/SearchParameter/Location-near"


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_migration_indexes_the_locations_already_stored(backend, tmp_path):
    with migrated_database(backend, tmp_path) as db:
        migrate.downgrade(db.engine, "0025_index_owner_checks")
        store_raw(db.engine, _location("old", PLACES["pkm-menteng"]))
        migrate.upgrade(db.engine)
        with db.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT param, value FROM idx_number ORDER BY param")).all()
        assert [(p, round(v, 4)) for p, v in rows] == [("near.latitude", -6.1963), ("near.longitude", 106.8317)]
        migrate.downgrade(db.engine, "0025_index_owner_checks")
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM idx_number")).scalar_one() == 0


def test_one_degree_of_latitude_is_what_the_search_takes_it_for():
    assert _haversine_km((0.0, 0.0), (1.0, 0.0)) == pytest.approx(KM_PER_DEGREE, rel=1e-4)
