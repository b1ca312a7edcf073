"""Auth modes (``none``, ``token``) and the start-up guard against an open server on a network."""

from __future__ import annotations

import ipaddress

MODES = ("none", "token")


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` only accepts connections from this machine."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_auth_mode(auth: str, host: str, *, allow_open: bool = False) -> None:
    """Refuse to serve ``host`` with ``auth`` = ``none`` unless it is loopback or ``allow_open``.

    Raises ValueError with a message meant for the operator.
    """
    if auth not in MODES:
        raise ValueError(f"FHIR_AUTH must be one of {', '.join(MODES)}, not {auth!r}")
    if auth == "none" and not is_loopback(host) and not allow_open:
        raise ValueError(
            f"refusing to serve {host} without authentication: use --auth token (see docs/security.md), "
            "or allow open access explicitly with FHIR_AUTH_ALLOW_OPEN=true"
        )
