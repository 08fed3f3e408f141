"""server.tls: the same server over HTTPS with a certificate and key from files (a mounted Secret)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    crt, pem = folder / "tls.crt", folder / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return crt, pem


def test_the_server_speaks_https_with_the_configured_certificate(
    start_server: Any, tiny_example: Path, tmp_path: Path
) -> None:
    crt, pem = _self_signed(tmp_path)
    srv = start_server(tiny_example, {"server": {"tls": {"certFile": str(crt), "keyFile": str(pem)}}})
    url = f"https://127.0.0.1:{srv.port}"
    trust = ssl.create_default_context(cafile=str(crt))
    deadline = time.monotonic() + 30
    while True:
        assert srv.proc.poll() is None, srv.log()
        try:
            if httpx.get(url + "/readyz", verify=trust, timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, srv.log()
        time.sleep(0.1)
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    assert httpx.post(url + "/v2/models/tiny/infer", json=body, verify=trust).status_code == 200
    try:
        plain = httpx.get(srv.url + "/healthz", timeout=2)  # plain HTTP on the same port
    except httpx.TransportError:
        pass
    else:
        assert plain.status_code == 400
