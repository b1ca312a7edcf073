"""``Location?near=[latitude]|[longitude]|[distance]|[units]`` (R4 location.html#positional).

A Location's ``position`` is indexed as two number rows, ``near.latitude`` and ``near.longitude``
(``idx_number``: no table of its own, so no extra statement on every write of every type). A search
keeps the Locations inside the distance: first a box of latitudes and longitudes around the point
(an index range), then the distance itself on the equirectangular projection (latitude degrees and
longitude degrees scaled by the cosine of the point's latitude), which within a few hundred km
differs from the great-circle distance by well under 1 % (Indonesia lies within 11 degrees of the
equator). Longitudes are not wrapped at the antimeridian.

The distance defaults to ``DEFAULT_KM`` ("the server can use its own discretion"); units are UCUM
``km`` (the default), ``m`` or ``[mi_i]``. Results are not sorted by distance: each match's
``Bundle.entry.search`` carries its great-circle distance from the nearest point asked for (R4's
``location-distance`` extension), from which a client orders them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

#: the index rows' parameter names (idx_number)
LATITUDE, LONGITUDE = "near.latitude", "near.longitude"
DEFAULT_KM = 5.0
#: the furthest a search may reach (half the earth's circumference)
MAX_KM = 20_000.0
#: km per degree of latitude (and of longitude at the equator)
KM_PER_DEGREE = 111.195
#: the earth's mean radius (IUGG), km
EARTH_RADIUS_KM = 6371.0088
#: R4's extension on ``Bundle.entry.search`` for a ``near`` match
DISTANCE_URL = "http://hl7.org/fhir/StructureDefinition/location-distance"
_UNITS_KM = {"km": 1.0, "m": 0.001, "[mi_i]": 1.609344}


@dataclass(frozen=True)
class NearValue:
    latitude: float
    longitude: float
    km: float


def parse_near_value(raw: str) -> NearValue:
    """``lat|lon[|distance[|units]]``; ValueError naming what is wrong."""
    parts = raw.split("|")
    if len(parts) < 2 or len(parts) > 4:
        raise ValueError(f"'{raw}' is not latitude|longitude|distance|units")
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"'{raw}': latitude and longitude must be decimal degrees") from None
    if not (-90 <= lat <= 90) or not (-180 <= lon <= 180):
        raise ValueError(f"'{raw}': latitude must be within -90..90 and longitude within -180..180")
    units = parts[3] if len(parts) == 4 and parts[3] else "km"
    if units not in _UNITS_KM:
        raise ValueError(f"'{raw}': units must be km, m or [mi_i], not '{units}'")
    distance = parts[2] if len(parts) >= 3 and parts[2] else None
    try:
        km = float(distance) * _UNITS_KM[units] if distance is not None else DEFAULT_KM
    except ValueError:
        raise ValueError(f"'{raw}': the distance must be a number") from None
    if not (0 < km <= MAX_KM) or math.isnan(km):
        raise ValueError(f"'{raw}': the distance must be above 0 and at most {MAX_KM:,.0f} km")
    return NearValue(lat, lon, km)


def position_rows(values: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """The number rows of a Location's ``position`` (both coordinates, or none)."""
    rows = []
    for _, v in values:
        if not isinstance(v, dict):
            continue
        lat, lon = v.get("latitude"), v.get("longitude")
        if (
            isinstance(lat, bool)
            or isinstance(lon, bool)
            or not isinstance(lat, int | float | Decimal)
            or not isinstance(lon, int | float | Decimal)
        ):
            continue
        for param, value in ((LATITUDE, float(lat)), (LONGITUDE, float(lon))):
            rows.append({"param": param, "value": value, "lo": value, "hi": value})
    return rows


def distance_extension(resource: dict[str, Any], points: list[NearValue]) -> dict[str, Any] | None:
    """The ``location-distance`` extension of a Location found by ``near``: the great-circle distance
    (haversine) from the nearest of ``points``, in km to the metre; None without a position."""
    rows = position_rows([("position", resource.get("position"))])
    if not rows:
        return None
    lat, lon = rows[0]["value"], rows[1]["value"]
    km = min(great_circle_km(lat, lon, p.latitude, p.longitude) for p in points)
    return {
        "url": DISTANCE_URL,
        "valueDistance": {"value": round(km, 3), "unit": "km", "system": "http://unitsofmeasure.org", "code": "km"},
    }


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """The great-circle (haversine) distance between two points, km."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    h = math.sin((phi2 - phi1) / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def box_and_scale(v: NearValue) -> tuple[float, float, float, float, float, float]:
    """(lowest, highest latitude, lowest, highest longitude, the longitude scale, the squared
    distance in degrees) of a search around ``v``."""
    d = v.km / KM_PER_DEGREE
    scale = max(math.cos(math.radians(v.latitude)), 1e-6)
    dlon = min(d / scale, 360.0)
    return v.latitude - d, v.latitude + d, v.longitude - dlon, v.longitude + dlon, scale * scale, d * d
