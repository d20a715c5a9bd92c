"""Certificates for the TLS tests, made with the openssl command as Redis' own test suite makes them."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from gearcam.bench.certs import authority, make_pair, signed

KEY_PASSPHRASE = "gearcam-test-pass"


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA that signed the server's and the client's certificates
    server_cert: Path
    server_key: Path
    encrypted_key: Path  # the server's key again, encrypted with KEY_PASSPHRASE
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client certificate another CA signed
    stranger_key: Path


def make_certificates(folder: Path) -> Certificates:
    """The benchmark's CA, server and client certificates, and another CA's client certificate and an encrypted key."""
    pair = make_pair(folder)
    authority(folder, "other-ca")
    signed(folder, "stranger", "other-ca", "/O=gearcam tests/CN=Stranger")
    subprocess.run(["openssl", "rsa", "-aes256", "-in", "server.key", "-passout", f"pass:{KEY_PASSPHRASE}", "-out",
                    "server-enc.key"], cwd=folder, check=True, capture_output=True)  # fmt: skip
    return Certificates(
        ca=pair.ca, server_cert=pair.server_cert, server_key=pair.server_key, encrypted_key=folder / "server-enc.key",
        client_cert=pair.client_cert, client_key=pair.client_key, stranger_cert=folder / "stranger.crt",
        stranger_key=folder / "stranger.key",
    )  # fmt: skip
