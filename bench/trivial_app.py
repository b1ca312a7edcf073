"""The yardstick: a trivial FastAPI endpoint served by the same uvicorn setup.

Returns fixed bytes of about the size of a stored Patient, so that "read by
id" can be compared with the cost of FastAPI + uvicorn alone.
"""

from fastapi import FastAPI
from fastapi.responses import Response

BODY = (
    b'{"resourceType":"Patient","id":"trivial","meta":{"versionId":"1","lastUpdated":"2026-01-01T00:00:00.000000+00:00"},'
    b'"identifier":[{"use":"official","system":"https://fhir.kemkes.go.id/id/nik","value":"3204154506900003"}],'
    b'"name":[{"use":"official","text":"Siti Aminah","family":"Aminah","given":["Siti"]}],'
    b'"gender":"female","birthDate":"1990-06-05"}'
)

app = FastAPI()


@app.get("/fhir/Patient/{res_id}")
async def read(res_id: str) -> Response:
    return Response(BODY, media_type="application/fhir+json; charset=utf-8")


@app.get("/fhir/metadata")
async def metadata() -> Response:
    return Response(b'{"resourceType":"CapabilityStatement"}', media_type="application/fhir+json")
