"""Every canonical URL and identifier system the mappings emit, in one place.

SATUSEHAT's own URLs are used wherever SATUSEHAT defines one. Where it is silent, everything lives under
one namespace of this project, :data:`NS` (``https://fhir-server.id``, shared with terminology/urls.py):
code systems under ``{NS}/CodeSystem/``, extensions under ``{NS}/StructureDefinition/``, identifier
systems under ``{NS}/id/``.
docs/mappings.md explains each choice.
"""

from __future__ import annotations

NS = "https://fhir-server.id"

# --- SATUSEHAT (fhir.kemkes.go.id) ---------------------------------------------------------------
NIK = "https://fhir.kemkes.go.id/id/nik"
NIK_IBU = "https://fhir.kemkes.go.id/id/nik-ibu"
KK = "https://fhir.kemkes.go.id/id/kk"
IHS = "https://fhir.kemkes.go.id/id/patient-ihs-number"
SATUSEHAT_PATIENT_PROFILE = "https://fhir.kemkes.go.id/r4/StructureDefinition/Patient"
EXT_ADMINISTRATIVE_CODE = "https://fhir.kemkes.go.id/r4/StructureDefinition/administrativeCode"
EXT_BIRTH_PLACE = "https://fhir.kemkes.go.id/r4/StructureDefinition/birthPlace"
EXT_CITIZENSHIP_STATUS = "https://fhir.kemkes.go.id/r4/StructureDefinition/citizenshipStatus"
EXT_RELIGION = "https://fhir.kemkes.go.id/r4/StructureDefinition/patient-religion"
EXT_PRIMARY_CARE_PROVIDER = "https://fhir.kemkes.go.id/r4/StructureDefinition/PrimaryCareProvider"

# --- Ours: identifier systems ----------------------------------------------------------------------
NIK_AYAH = f"{NS}/id/nik-ayah"
AKTA_LAHIR = f"{NS}/id/akta-kelahiran"
BPJS_CARD = f"{NS}/id/bpjs-kartu"  # noKartu, 13 digits; Patient.identifier and Coverage.identifier
BPJS_MR = f"{NS}/id/bpjs-nomr"  # noMR as registered with BPJS by the serving facility
BPJS_FASKES = f"{NS}/id/bpjs-faskes"  # BPJS facility code (kdProvider, ppkPelayanan, ppkRujukan)
BPJS_SEP = f"{NS}/id/bpjs-sep"  # noSep, 19 characters
BPJS_SEP_REQUEST = f"{NS}/id/bpjs-sep-request"  # key of a SEP request that has no SEP number yet
BPJS_RUJUKAN = f"{NS}/id/bpjs-rujukan"  # referral number
BPJS_DPJP = f"{NS}/id/bpjs-dpjp"  # BPJS doctor (DPJP) code
BPJS_PAYOR = f"{NS}/id/payor"  # payor organisations; BPJS Kesehatan is value "bpjs-kesehatan"
PCARE_KUNJUNGAN = f"{NS}/id/pcare-kunjungan"  # noKunjungan
PCARE_PENDAFTARAN = f"{NS}/id/pcare-pendaftaran"  # key of a P-Care registration (no native number)
PCARE_DOKTER = f"{NS}/id/pcare-dokter"  # kdDokter
SOURCE_KEY = f"{NS}/id/mapping-source"  # Conditions/Observations derived from a native record

BPJS_PAYOR_VALUE = "bpjs-kesehatan"
BPJS_PAYOR_NAME = "BPJS Kesehatan"

# --- Ours: code systems (terminology/content/indonesia) --------------------------------------------
CS = f"{NS}/CodeSystem"
CM = f"{NS}/ConceptMap"
CS_DUKCAPIL_SEX = f"{CS}/dukcapil-jenis-kelamin"
CS_DUKCAPIL_RELIGION = f"{CS}/dukcapil-agama"
CS_DUKCAPIL_MARITAL = f"{CS}/dukcapil-status-kawin"
CS_DUKCAPIL_BLOOD = f"{CS}/dukcapil-golongan-darah"
CS_DUKCAPIL_EDUCATION = f"{CS}/dukcapil-pendidikan"
CS_DUKCAPIL_SHDK = f"{CS}/dukcapil-shdk"
CS_DUKCAPIL_OCCUPATION = f"{CS}/dukcapil-pekerjaan"
CS_BPJS_SEX = f"{CS}/bpjs-jenis-kelamin"
CS_BPJS_PARTICIPANT_TYPE = f"{CS}/bpjs-jenis-peserta"
CS_BPJS_CLASS = f"{CS}/bpjs-hak-kelas"
CS_BPJS_STATUS = f"{CS}/bpjs-status-peserta"
CS_BPJS_SERVICE_TYPE = f"{CS}/bpjs-jenis-pelayanan"
CS_BPJS_UPGRADE_CLASS = f"{CS}/bpjs-kelas-rawat-naik"
CS_BPJS_UPGRADE_PAYER = f"{CS}/bpjs-pembiayaan"
CS_BPJS_REFERRAL_SOURCE = f"{CS}/bpjs-asal-rujukan"
CS_BPJS_ACCIDENT = f"{CS}/bpjs-laka-lantas"
CS_BPJS_VISIT_PURPOSE = f"{CS}/bpjs-tujuan-kunjungan"
CS_BPJS_FLAG_PROCEDURE = f"{CS}/bpjs-flag-procedure"
CS_BPJS_SUPPORTING = f"{CS}/bpjs-penunjang"
CS_BPJS_ASSESSMENT = f"{CS}/bpjs-assesment-pelayanan"
CS_BPJS_POLI = f"{CS}/bpjs-poli"
CS_BPJS_PISA = f"{CS}/bpjs-pisa"
CS_PCARE_TKP = f"{CS}/pcare-tkp"
CS_PCARE_POLI = f"{CS}/pcare-poli"
CS_PCARE_SADAR = f"{CS}/pcare-kesadaran"
CS_PCARE_STATUS_PULANG = f"{CS}/pcare-status-pulang"
CS_PCARE_PROGNOSA = f"{CS}/pcare-prognosa"
CS_PCARE_TACC = f"{CS}/pcare-tacc"

CM_DUKCAPIL_SEX = f"{CM}/dukcapil-jenis-kelamin-to-administrative-gender"
CM_BPJS_SEX = f"{CM}/bpjs-jenis-kelamin-to-administrative-gender"
CM_DUKCAPIL_MARITAL = f"{CM}/dukcapil-status-kawin-to-v3-marital-status"
CM_DUKCAPIL_RELIGION = f"{CM}/dukcapil-agama-to-v3-religious-affiliation"
CM_BPJS_SERVICE_TYPE = f"{CM}/bpjs-jenis-pelayanan-to-v3-actcode"
CM_PCARE_TKP = f"{CM}/pcare-tkp-to-v3-actcode"

# --- Ours: extensions (StructureDefinitions in mappings/structuredefinitions/) --------------------
SD = f"{NS}/StructureDefinition"
EXT_OCCUPATION = f"{SD}/occupation"
EXT_EDUCATION = f"{SD}/education"
EXT_BLOOD_TYPE = f"{SD}/blood-type"
EXT_FAMILY_RELATIONSHIP = f"{SD}/family-relationship"
EXT_VILLAGE_NAME = "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-precinct"
EXT_HAMLET = f"{SD}/address-hamlet"
EXT_COVERAGE_STATUS = f"{SD}/bpjs-participant-status"
EXT_BPJS_PESERTA = f"{SD}/bpjs-peserta"
EXT_ENCOUNTER_COVERAGE = f"{SD}/encounter-coverage"
EXT_BPJS_SEP = f"{SD}/bpjs-sep"
EXT_PCARE = f"{SD}/pcare-kunjungan"

# --- HL7 -----------------------------------------------------------------------------------------
V3_MARITAL = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
V3_RELIGION = "http://terminology.hl7.org/CodeSystem/v3-ReligiousAffiliation"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
V3_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
V2_IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
DIAGNOSIS_ROLE = "http://terminology.hl7.org/CodeSystem/diagnosis-role"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
