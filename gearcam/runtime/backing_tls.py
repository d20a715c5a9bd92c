"""TLS toward the backing Redis (`rediss://` in runtime.backing_url): the client side of the links.

A backing Redis elsewhere (a managed Redis, another host) is reached over TLS as a Redis replica
reaches its master with `tls-replication yes`: the runtime shows `tls_client_cert_file` (or
`tls_cert_file`) where that Redis asks clients for a certificate, and trusts the server that
`tls_ca_cert_file`/`tls_ca_cert_dir` signed, or, with neither, the system's CAs, as redis-py and
redis-cli do. The host named in the URL must be one its certificate names (redis-py checks that too;
Python matches an IP address against the certificate's IP entries).

Plain data, so it travels to the Gears workers (which must not import the settings) with the
rest of the address. Each process builds its context once, and again when CONFIG SET renews the
files (renew): as Redis builds a new context for its outgoing links then, new links read the new
files and links already open keep the session they negotiated. Links keep the files they were
given at start as their key; what those stand for now is kept here, per process.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

__all__ = ["BackingTls", "client_context", "load_context", "no_prompt", "renew"]


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


_renewed: dict[BackingTls, BackingTls] = {}  # the files links were given at start: those CONFIG SET named since
_contexts: dict[BackingTls, ssl.SSLContext] = {}


def load_context(tls: BackingTls) -> ssl.SSLContext:
    """A context read from these files now; ssl.SSLError or OSError where a file does not load."""
    context = ssl.create_default_context(cafile=tls.ca_cert_file, capath=tls.ca_cert_dir)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file, tls.key_file_pass or no_prompt)
    return context


def client_context(tls: BackingTls) -> ssl.SSLContext:
    """The context of a new link given `tls` at start: read once, and again after renew(); ssl.SSLError or
    OSError where a file does not load (the runtime checks at start)."""
    context = _contexts.get(tls)
    if context is None:
        context = _contexts.setdefault(tls, load_context(_renewed.get(tls, tls)))
    return context


def renew(tls: BackingTls, files: BackingTls) -> None:
    """New links given `tls` at start read `files` from now on. They are read here first: where they do not
    load, the error is raised and nothing changes."""
    context = load_context(files)
    _renewed[tls] = files
    _contexts[tls] = context
