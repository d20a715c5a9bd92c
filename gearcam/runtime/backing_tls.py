"""TLS toward the backing Redis (`rediss://` in runtime.backing_url): the client side of the links.

A backing Redis elsewhere (a managed Redis, another host) is reached over TLS as a Redis replica
reaches its master with `tls-replication yes`: the runtime shows `tls_client_cert_file` (or
`tls_cert_file`) where that Redis asks clients for a certificate, and trusts the server that
`tls_ca_cert_file`/`tls_ca_cert_dir` signed, or, with neither, the system's CAs, as redis-py and
redis-cli do. The host named in the URL must be one its certificate names (redis-py checks that too;
Python matches an IP address against the certificate's IP entries).

Plain data, so it travels to the Gears workers (which must not import the settings) with the
rest of the address; each process builds its context once.
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass, field

__all__ = ["BackingTls", "client_context", "no_prompt"]


@dataclass(frozen=True)
class BackingTls:
    ca_cert_file: str | None = None
    ca_cert_dir: str | None = None
    cert_file: str | None = None  # shown where the backing Redis wants a client certificate
    key_file: str | None = None
    key_file_pass: str | None = field(default=None, repr=False)


def no_prompt() -> bytes:
    """OpenSSL would otherwise ask for an encrypted key's passphrase on the terminal, and wait there."""
    return b""


@functools.cache
def client_context(tls: BackingTls) -> ssl.SSLContext:
    """The links' context; ssl.SSLError or OSError where a file does not load (the runtime checks at start)."""
    context = ssl.create_default_context(cafile=tls.ca_cert_file, capath=tls.ca_cert_dir)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file, tls.key_file_pass or no_prompt)
    return context
