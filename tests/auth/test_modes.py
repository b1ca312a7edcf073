"""Auth mode none is only for loopback unless explicitly allowed."""

from __future__ import annotations

import pytest

from fhir_server.auth.modes import check_auth_mode, is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.1.1", "::1", "[::1]", "localhost"])
def test_loopback_addresses(host):
    assert is_loopback(host)
    check_auth_mode("none", host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "fhir.example.id", ""])
def test_open_server_on_a_network_is_refused(host):
    assert not is_loopback(host)
    with pytest.raises(ValueError, match="without authentication"):
        check_auth_mode("none", host)
    check_auth_mode("none", host, allow_open=True)
    check_auth_mode("token", host)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="FHIR_AUTH"):
        check_auth_mode("basic", "127.0.0.1")
