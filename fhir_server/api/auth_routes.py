"""The OAuth2 token endpoint and SMART discovery (docs/security.md)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from fhir_server.api import http
from fhir_server.auth.smart import smart_configuration
from fhir_server.auth.token_endpoint import RESPONSE_HEADERS, OAuthError, TokenSettings, issue_token, parse_form, requires_write
from fhir_server.errors import FhirError

router = APIRouter(prefix="/fhir")


def _token_url(request: Request) -> str:
    return http.base_url(request, request.app.state.fhir.settings.base_url) + "/auth/token"


@router.get("/.well-known/smart-configuration", summary="SMART configuration")
async def smart_config(request: Request) -> Response:
    st = request.app.state.fhir
    if st.settings.auth != "token":
        raise FhirError.of(404, "not-found", "SMART authorization is off (FHIR_AUTH=none)")
    base = http.base_url(request, st.settings.base_url)
    return JSONResponse(smart_configuration(_token_url(request), issuer=base))


@router.post(
    "/auth/token",
    summary="OAuth2 token (client credentials, private_key_jwt)",
    openapi_extra={"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}},
)
async def token_endpoint(request: Request) -> Response:
    st = request.app.state.fhir
    if st.settings.auth != "token":
        raise FhirError.of(404, "not-found", "Token authorization is off (FHIR_AUTH=none)")
    raw = await http.read_body(request, 64 * 1024)
    verifier = st.token_verifier()
    settings = TokenSettings(verifier.key, issuer=http.base_url(request, st.settings.base_url), lifetime=st.settings.auth_token_lifetime)
    token_url = _token_url(request)

    def issue() -> dict:
        form = parse_form(raw, request.url.query)
        with st.db.write() if requires_write(form) else st.db.read() as conn:
            return issue_token(conn, form, request.headers.get("authorization"), token_url, settings=settings)

    try:
        # the secret hash check is deliberately slow: keep it off the event loop
        answer = await run_in_threadpool(issue)
    except OAuthError as exc:
        return JSONResponse(exc.body, exc.status, headers=exc.headers)
    return JSONResponse(answer, headers=dict(RESPONSE_HEADERS))
