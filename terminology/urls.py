"""Canonical URLs minted or used by the terminology engine.

SATUSEHAT defines no canonical CodeSystem URL for the Kemendagri region codes (its
``administrativeCode`` extension carries bare ``valueCode``s), so the region code
system and its value sets live in this server's own namespace, ``https://fhir-server.id``.
"""

from __future__ import annotations

#: Root of every canonical this server mints.
NAMESPACE = "https://fhir-server.id"
CODESYSTEM_BASE = f"{NAMESPACE}/CodeSystem/"
VALUESET_BASE = f"{NAMESPACE}/ValueSet/"
CONCEPTMAP_BASE = f"{NAMESPACE}/ConceptMap/"

#: Kemendagri administrative regions (provinsi, kabupaten/kota, kecamatan, desa/kelurahan),
#: codes without dots as SATUSEHAT's administrativeCode extension carries them.
KEMENDAGRI_WILAYAH = f"{CODESYSTEM_BASE}kemendagri-wilayah"

#: One value set per level, plus the whole code system.
KEMENDAGRI_WILAYAH_VS = f"{VALUESET_BASE}kemendagri-wilayah"
KEMENDAGRI_PROVINCE_VS = f"{VALUESET_BASE}kemendagri-wilayah-province"
KEMENDAGRI_CITY_VS = f"{VALUESET_BASE}kemendagri-wilayah-city"
KEMENDAGRI_DISTRICT_VS = f"{VALUESET_BASE}kemendagri-wilayah-district"
KEMENDAGRI_VILLAGE_VS = f"{VALUESET_BASE}kemendagri-wilayah-village"

#: SATUSEHAT address extension carrying the region codes (sub-extensions province, city,
#: district, village, rt, rw, each a valueCode).
SATUSEHAT_ADMINISTRATIVE_CODE = "https://fhir.kemkes.go.id/r4/StructureDefinition/administrativeCode"

#: Suffix that turns a CodeSystem URL into its implicit "all codes" value set (FHIR R4 ``CodeSystem.valueSet``
#: convention used by terminology servers).
IMPLICIT_VALUESET_SUFFIX = "?vs"
