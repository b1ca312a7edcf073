"""Which SATUSEHAT a facility talks to, with which credentials (docs/satusehat.md).

``FHIR_SATUSEHAT_URL`` is ``sandbox``, ``production`` or an explicit base under which
``/oauth2/v1/accesstoken`` and ``/fhir-r4/v1`` live (as on the real hosts; the tests' simulator).
The client secret never appears in a repr, a log line or CLI output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: the documented hosts (reference: SATUSEHAT IG "Authentication"; Sandbox = the staging host)
HOSTS = {
    "sandbox": "https://api-satusehat-stg.dto.kemkes.go.id",
    "production": "https://api-satusehat.kemkes.go.id",
}
#: the facility configured by environment
DEFAULT = "default"


def resolve_base(url: str) -> str:
    """The host base of ``sandbox``, ``production`` or an explicit ``http(s)://`` base."""
    value = url.strip()
    if value.lower() in HOSTS:
        return HOSTS[value.lower()]
    if not value.startswith(("https://", "http://")):
        raise ValueError("FHIR_SATUSEHAT_URL must be 'sandbox', 'production' or an http(s):// base URL")
    return value.rstrip("/")


@dataclass(frozen=True)
class Facility:
    name: str
    #: the facility's SATUSEHAT Organization id (Master Sarana Index)
    organization_id: str
    client_id: str
    client_secret: str = field(repr=False)
    #: host base (see :func:`resolve_base`)
    base: str = HOSTS["sandbox"]
    #: the local Organization whose resources go to this facility (None: every resource)
    local_org: str | None = None

    @property
    def token_url(self) -> str:
        return f"{self.base}/oauth2/v1/accesstoken"

    @property
    def fhir_url(self) -> str:
        return f"{self.base}/fhir-r4/v1"

    def public(self) -> dict[str, Any]:
        """What may be shown: everything but the secret."""
        return {
            "name": self.name,
            "organization_id": self.organization_id,
            "client_id": self.client_id,
            "url": self.base,
            "local_org": self.local_org,
        }


def from_settings(settings: Any) -> Facility | None:
    """The facility of ``FHIR_SATUSEHAT_*`` (None: sync off, some of them unset)."""
    url = settings.satusehat_url
    client_id = settings.satusehat_client_id
    secret = settings.satusehat_client_secret
    org = settings.satusehat_organization_id
    if not (url and client_id and secret and org):
        return None
    return Facility(DEFAULT, org, client_id, secret, resolve_base(url))
