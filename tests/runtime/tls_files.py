"""Certificates for the TLS tests, made with the openssl command as Redis' own test suite makes them."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

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


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _signed(folder: Path, name: str, ca: str, subject: str, extensions: str | None = None) -> None:
    _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=folder)
    _openssl("req", "-new", "-sha256", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=folder)
    extra = ["-extfile", extensions] if extensions else []
    _openssl("x509", "-req", "-sha256", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", *extra, cwd=folder)  # fmt: skip


def _authority(folder: Path, name: str) -> None:
    _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=folder)
    _openssl("req", "-x509", "-new", "-nodes", "-sha256", "-key", f"{name}.key", "-days", "2",
             "-subj", f"/O=gearcam tests/CN={name}", "-out", f"{name}.crt", cwd=folder)  # fmt: skip


def make_certificates(folder: Path) -> Certificates:
    folder.mkdir(parents=True, exist_ok=True)
    _authority(folder, "ca")
    _authority(folder, "other-ca")
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _signed(folder, "server", "ca", "/O=gearcam tests/CN=Server", "server.ext")
    _signed(folder, "client", "ca", "/O=gearcam tests/CN=Client")
    _signed(folder, "stranger", "other-ca", "/O=gearcam tests/CN=Stranger")
    _openssl("rsa", "-aes256", "-in", "server.key", "-passout", f"pass:{KEY_PASSPHRASE}", "-out", "server-enc.key",
             cwd=folder)  # fmt: skip
    return Certificates(
        ca=folder / "ca.crt", server_cert=folder / "server.crt", server_key=folder / "server.key",
        encrypted_key=folder / "server-enc.key", client_cert=folder / "client.crt", client_key=folder / "client.key",
        stranger_cert=folder / "stranger.crt", stranger_key=folder / "stranger.key",
    )  # fmt: skip
