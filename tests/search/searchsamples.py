PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {
        "profile": ["https://fhir.kemkes.go.id/r4/StructureDefinition/Patient"],
        "tag": [{"system": "http://t", "code": "x"}],
        "lastUpdated": "2024-01-01T00:00:00Z",
    },
    "identifier": [
        {"use": "official", "system": "https://fhir.kemkes.go.id/id/nik", "value": "3171234567890123"},
        {"system": "https://fhir.kemkes.go.id/id/ihs-number", "value": "P02478375538"},
        {
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
            "system": "http://rs/mr",
            "value": "MR-1",
        },
    ],
    "active": True,
    "name": [{"use": "official", "text": "Siti Nurhaliza", "family": "Nurhaliza", "given": ["Siti", "Ayu"]}],
    "telecom": [{"system": "phone", "value": "08123456789", "use": "mobile"}, {"system": "email", "value": "siti@example.com"}],
    "gender": "female",
    "birthDate": "1985-03-12",
    "deceasedBoolean": False,
    "address": [
        {
            "use": "home",
            "line": ["Jl. Mélati No. 7"],
            "city": "Jakarta Selatan",
            "postalCode": "12345",
            "country": "ID",
            "extension": [
                {
                    "url": "https://fhir.kemkes.go.id/r4/StructureDefinition/administrativeCode",
                    "extension": [
                        {"url": "province", "valueCode": "31"},
                        {"url": "city", "valueCode": "3171"},
                        {"url": "district", "valueCode": "317101"},
                        {"url": "village", "valueCode": "3171011001"},
                    ],
                }
            ],
        }
    ],
    "maritalStatus": {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M", "display": "Married"}],
        "text": "Kawin",
    },
    "multipleBirthInteger": 0,
    "communication": [
        {
            "language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "id-ID", "display": "Indonesian"}], "text": "Indonesian"},
            "preferred": True,
        }
    ],
    "managingOrganization": {"reference": "Organization/10000004"},
    "generalPractitioner": [{"reference": "Practitioner/N10000001"}],
    "link": [{"other": {"reference": "Patient/p0"}, "type": "seealso"}],
}
ENCOUNTER = {
    "resourceType": "Encounter",
    "id": "e1",
    "identifier": [{"system": "http://sys-ids.kemkes.go.id/encounter/10000004", "value": "P20240001"}],
    "status": "finished",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
    "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185349003", "display": "Encounter for check up"}]}],
    "subject": {"reference": "Patient/p1", "display": "Siti"},
    "participant": [
        {
            "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "ATND"}]}],
            "individual": {"reference": "Practitioner/N10000001"},
        }
    ],
    "period": {"start": "2024-01-05T08:00:00+07:00", "end": "2024-01-05T09:00:00+07:00"},
    "length": {"value": 60, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"},
    "statusHistory": [{"status": "arrived", "period": {"start": "2024-01-05T08:00:00+07:00"}}],
    "reasonCode": [{"text": "Demam tinggi"}],
    "diagnosis": [{"condition": {"reference": "Condition/c1"}, "use": {"coding": [{"code": "DD"}]}, "rank": 1}],
    "hospitalization": {"specialArrangement": [{"coding": [{"system": "http://x", "code": "wheel"}]}]},
    "location": [{"location": {"reference": "Location/l1"}, "period": {"start": "2024-01-05T08:00:00+07:00"}}],
    "serviceProvider": {"reference": "Organization/10000004"},
    "episodeOfCare": [{"identifier": {"system": "http://eoc", "value": "EOC1"}}],
}
COVERAGE = {
    "resourceType": "Coverage",
    "id": "c1",
    "status": "active",
    "identifier": [{"system": "https://fhir.bpjs-kesehatan.go.id/id/nomor-kartu", "value": "0001234567890"}],
    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PUBLICPOL"}]},
    "subscriber": {"reference": "Patient/p1"},
    "beneficiary": {"reference": "Patient/p1"},
    "dependent": "01",
    "period": {"start": "2024-01-01", "end": "2024-12-31"},
    "payor": [{"reference": "Organization/bpjs", "identifier": {"system": "http://org", "value": "BPJS"}}],
    "class": [
        {
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class", "code": "plan"}]},
            "value": "KELAS-1",
            "name": "Kelas 1",
        }
    ],
}
