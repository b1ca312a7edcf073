"""Registered clients: add, list, revoke, hashed secrets, registered keys, used assertion ids."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fhir_server.auth.clients import (
    ClientError,
    add_client,
    get_client,
    hash_secret,
    list_clients,
    load_jwks_text,
    record_assertion_jti,
    revoke_client,
    validate_jwks,
    verify_secret,
)
from fhir_server.storage.auth_tables import auth_clients

from .keyutil import private_jwk, public_jwk, public_pem


def test_add_returns_id_and_secret_once_and_stores_only_a_hash(db):
    with db.write() as conn:
        client_id, secret = add_client(conn, name="RS Harapan", scopes="system/*.rs")
    assert client_id and secret and len(secret) >= 40
    with db.read() as conn:
        row = conn.execute(sa.select(auth_clients).where(auth_clients.c.client_id == client_id)).mappings().one()
    assert secret not in "".join(str(v) for v in row.values())
    assert row["secret_hash"].startswith("scrypt$")
    assert verify_secret(secret, row["secret_hash"])
    assert not verify_secret(secret + "x", row["secret_hash"])


def test_each_hash_has_its_own_salt():
    assert hash_secret("same secret") != hash_secret("same secret")


def test_verify_secret_without_a_stored_hash_fails():
    assert not verify_secret("anything", None)
    assert not verify_secret("anything", "not-a-hash")


def test_list_shows_every_client_without_secrets(db):
    with db.write() as conn:
        a, _ = add_client(conn, name="A", scopes=["system/Patient.rs"], now_us=1)
        b, _ = add_client(conn, name="B", scopes="system/*.cruds system/AuditEvent.rs", organization_id="10000004", now_us=2)
    with db.read() as conn:
        clients = list_clients(conn)
    assert [(c.client_id, c.name) for c in clients] == [(a, "A"), (b, "B")]
    assert clients[1].scopes == ("system/*.cruds", "system/AuditEvent.rs")
    assert clients[1].organization_id == "10000004"
    assert all(c.active and c.has_secret for c in clients)
    assert "secret_hash" not in repr(clients[0])


def test_organization_reference_is_stored_as_its_id(db):
    with db.write() as conn:
        cid, _ = add_client(conn, name="A", scopes="system/*.rs", organization_id="Organization/abc-1")
        assert get_client(conn, cid).organization_id == "abc-1"
        with pytest.raises(ClientError):
            add_client(conn, name="B", scopes="system/*.rs", organization_id="no spaces/allowed")


def test_revoke_deactivates_the_client(db):
    with db.write() as conn:
        cid, _ = add_client(conn, name="A", scopes="system/*.rs")
        assert revoke_client(conn, cid, now_us=5)
        assert revoke_client(conn, cid, now_us=9)  # idempotent; keeps the first time
    with db.read() as conn:
        client = get_client(conn, cid)
    assert not client.active and client.revoked_us == 5


def test_revoke_unknown_client_reports_false(db):
    with db.write() as conn:
        assert not revoke_client(conn, "nobody")


def test_explicit_client_id_must_be_unique_and_well_formed(db):
    with db.write() as conn:
        assert add_client(conn, name="A", scopes="system/*.rs", client_id="simrs-1")[0] == "simrs-1"
        with pytest.raises(ClientError, match="already registered"):
            add_client(conn, name="B", scopes="system/*.rs", client_id="simrs-1")
        with pytest.raises(ClientError):
            add_client(conn, name="C", scopes="system/*.rs", client_id="has:colon")
        assert len(list_clients(conn)) == 1


@pytest.mark.parametrize("scopes", ["patient/*.read", "openid", "", "system/AuditEvent.write"])
def test_clients_get_system_scopes_only(db, scopes):
    with db.write() as conn, pytest.raises(ClientError):
        add_client(conn, name="A", scopes=scopes)


def test_key_only_client_has_no_secret(db, rsa_key):
    with db.write() as conn:
        cid, secret = add_client(conn, name="Backend", scopes="system/*.rs", jwks={"keys": [public_jwk(rsa_key, "k1")]})
        client = get_client(conn, cid)
    assert secret is None
    assert client.auth_methods == ("private_key_jwt",)
    assert client.jwks["keys"][0]["kid"] == "k1"


def test_client_with_neither_secret_nor_keys_is_refused(db):
    with db.write() as conn, pytest.raises(ClientError):
        add_client(conn, name="A", scopes="system/*.rs", with_secret=False)


def test_jwks_with_private_key_material_is_refused(rsa_key, ec_key):
    for key in (rsa_key, ec_key):
        with pytest.raises(ClientError, match="private"):
            validate_jwks({"keys": [private_jwk(key)]})


def test_jwks_accepts_rsa_and_p384_only(rsa_key, ec_key):
    assert len(validate_jwks({"keys": [public_jwk(rsa_key, "r"), public_jwk(ec_key, "e")]})["keys"]) == 2
    p256 = public_jwk(ec.generate_private_key(ec.SECP256R1()), "p256")
    with pytest.raises(ClientError):
        validate_jwks({"keys": [p256]})
    small = public_jwk(rsa.generate_private_key(public_exponent=65537, key_size=1024), "small")
    with pytest.raises(ClientError, match="2048"):
        validate_jwks({"keys": [small]})
    with pytest.raises(ClientError):
        validate_jwks({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})
    with pytest.raises(ClientError):
        validate_jwks({"keys": []})


def test_single_jwk_and_pem_files_are_accepted(rsa_key, ec_key):
    import json

    assert load_jwks_text(json.dumps(public_jwk(ec_key, "e")))["keys"][0]["kid"] == "e"
    jwks = load_jwks_text(public_pem(rsa_key) + public_pem(ec_key))
    assert [k["kty"] for k in jwks["keys"]] == ["RSA", "EC"]
    assert all(k["kid"] and k["use"] == "sig" for k in jwks["keys"])
    with pytest.raises(ClientError):
        load_jwks_text("not a key")


def test_assertion_jti_is_usable_once_per_client(db):
    with db.write() as conn:
        a, _ = add_client(conn, name="A", scopes="system/*.rs")
        b, _ = add_client(conn, name="B", scopes="system/*.rs")
        assert record_assertion_jti(conn, a, "j1", expires_us=2_000, now_us=1_000)
        assert not record_assertion_jti(conn, a, "j1", expires_us=2_000, now_us=1_500)
        assert record_assertion_jti(conn, b, "j1", expires_us=2_000, now_us=1_500)


def test_expired_jtis_are_purged(db):
    with db.write() as conn:
        a, _ = add_client(conn, name="A", scopes="system/*.rs")
        assert record_assertion_jti(conn, a, "j1", expires_us=2_000, now_us=1_000)
        # once the assertion has expired it can no longer be replayed anyway
        assert record_assertion_jti(conn, a, "j2", expires_us=9_000, now_us=3_000)
        assert record_assertion_jti(conn, a, "j1", expires_us=9_000, now_us=3_000)


def test_the_anonymous_client_id_is_reserved(db):
    with db.write() as conn, pytest.raises(ClientError, match="reserved"):
        add_client(conn, name="x", scopes="system/*.read", client_id="anonymous")
