"""A rest-hook delivery over TLS goes to the address that was checked, with the endpoint's name as
``Host``, as the TLS server name (SNI) and in the certificate check (subscriptions/delivery.py).

The endpoint's name is made to resolve to loopback (the check itself is covered by
test_endpoints.py); the receiver's certificate is signed by a CA made here and trusted through
``SSL_CERT_FILE``, as a hospital trusts its internal CA.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fhir_server.subscriptions import delivery
from fhir_server.subscriptions.endpoints import decide, parse_networks

LOOPBACK = parse_networks("127.0.0.1/32")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    else:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class Receiver:
    """An HTTPS receiver on 127.0.0.1 whose certificate names ``cert_name``; it records the server
    name each handshake asked for and each request's ``Host``."""

    def __init__(self, folder: Path, cert_name: str, ca_key: ec.EllipticCurvePrivateKey) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(cert_name, key, "Test hospital CA", ca_key, ca=False)
        (folder / f"{cert_name}.pem").write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        self.server_names: list[str | None] = []
        self.hosts: list[str | None] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.hosts.append(self.headers.get("Host"))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(folder / f"{cert_name}.pem")
        context.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def trusted_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Test hospital CA", key, "Test hospital CA", key, ca=True)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))

    async def resolve_to_loopback(url: str, allowed):  # the name of the endpoint resolves to 127.0.0.1
        return decide(url, [ipaddress.ip_address("127.0.0.1")], allowed)

    monkeypatch.setattr(delivery, "check", resolve_to_loopback)
    yield key


def _deliver(url: str) -> delivery.Sent:
    async def go() -> delivery.Sent:
        client = delivery.new_client()
        try:
            return await delivery.send(
                client, url, LOOPBACK, method="POST", headers={"Content-Type": "application/fhir+json"}, body=b"{}", timeout=10
            )
        finally:
            await client.close()

    return asyncio.run(go())


def test_tls_delivery_names_the_endpoint_in_sni_host_and_certificate_check(tmp_path, trusted_ca):
    receiver = Receiver(tmp_path, "hook.rs-sehat.test", trusted_ca)
    try:
        sent = _deliver(f"https://hook.rs-sehat.test:{receiver.port}/notify")
        assert sent.ok, sent
        assert receiver.server_names == ["hook.rs-sehat.test"]
        assert receiver.hosts == [f"hook.rs-sehat.test:{receiver.port}"]
    finally:
        receiver.close()


def test_a_certificate_for_another_name_is_refused(tmp_path, trusted_ca):
    receiver = Receiver(tmp_path, "other.rs-sehat.test", trusted_ca)
    try:
        sent = _deliver(f"https://hook.rs-sehat.test:{receiver.port}/notify")
        assert sent.status is None and not sent.ok
        assert "certificate" in (sent.error or "").lower()
        assert receiver.hosts == []  # nothing was sent
    finally:
        receiver.close()
