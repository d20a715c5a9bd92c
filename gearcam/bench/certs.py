"""Certificates for the TLS figures, made with the openssl command as Redis' own test suite makes them.

A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate, all valid two
days: the benchmark's runtime and redis-server want client certificates, as Redis does by default.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Pair", "authority", "make_pair", "signed"]


@dataclass(frozen=True)
class Pair:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def authority(folder: Path, name: str) -> None:
    """`name`.crt and `name`.key: a self-signed CA."""
    _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=folder)
    _openssl("req", "-x509", "-new", "-nodes", "-sha256", "-key", f"{name}.key", "-days", "2",
             "-subj", f"/O=gearcam tests/CN={name}", "-out", f"{name}.crt", cwd=folder)  # fmt: skip


def signed(folder: Path, name: str, ca: str, subject: str, extensions: str | None = None) -> None:
    """`name`.crt and `name`.key, signed by the CA `ca` (with the openssl extensions file `extensions`)."""
    _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=folder)
    _openssl("req", "-new", "-sha256", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=folder)
    extra = ["-extfile", extensions] if extensions else []
    _openssl("x509", "-req", "-sha256", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", *extra, cwd=folder)  # fmt: skip


def make_pair(folder: Path) -> Pair:
    folder.mkdir(parents=True, exist_ok=True)
    authority(folder, "ca")
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    signed(folder, "server", "ca", "/O=gearcam tests/CN=Server", "server.ext")
    signed(folder, "client", "ca", "/O=gearcam tests/CN=Client")
    return Pair(folder / "ca.crt", folder / "server.crt", folder / "server.key", folder / "client.crt",
                folder / "client.key")  # fmt: skip
