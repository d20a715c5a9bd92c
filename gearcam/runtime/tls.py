"""The TLS port's context, and the TLS of the links to a rediss:// backing Redis, from Redis' own tls-* settings.

Redis serves TLS on `tls-port` beside (or, with `port 0`, instead of) its plain port, and
refuses to start when the files do not load; the runtime takes the same settings under the
same names (runtime.tls_*, --tls-*) and refuses the same way, naming the setting to fix.
Clients must show a certificate the CA signed unless tls_auth_clients says otherwise, as in Redis.
"""

from __future__ import annotations

import os
import ssl

from gearcam.config import RuntimeSettings
from gearcam.config import runtime_flag as _flag
from gearcam.errors import ConfigError
from gearcam.runtime.backing_tls import BackingTls, load_context, no_prompt

__all__ = ["backing_tls", "server_context"]

_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
# Versions between the lowest and the highest named that were left out (tls-protocols "TLSv1 TLSv1.2").
_LEFT_OUT = {"TLSv1.1": ssl.OP_NO_TLSv1_1, "TLSv1.2": ssl.OP_NO_TLSv1_2}
_VERIFY = {"yes": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "no": ssl.CERT_NONE}


def _protocols(context: ssl.SSLContext, spelled: str) -> None:
    names = spelled.split()
    unknown = [name for name in names if name not in _VERSIONS]
    if not names or unknown:
        raise ConfigError(
            f"invalid tls_protocols {spelled!r}: use a combination of 'TLSv1', 'TLSv1.1', 'TLSv1.2' and 'TLSv1.3' "
            f"(Redis' tls-protocols), set by {_flag('tls_protocols')}"
        )
    order = list(_VERSIONS)
    ranks = sorted(order.index(name) for name in names)
    try:
        context.minimum_version = _VERSIONS[order[ranks[0]]]
        context.maximum_version = _VERSIONS[order[ranks[-1]]]
    except ValueError as exc:  # this OpenSSL cannot serve that version at all
        raise ConfigError(f"tls_protocols {spelled!r}: {exc}; name TLSv1.2 and TLSv1.3") from None
    for name in order[ranks[0] + 1 : ranks[-1]]:
        if name not in names:
            context.options |= _LEFT_OUT[name]


def _readable(settings: RuntimeSettings, *names: str) -> None:
    """OpenSSL's own error for a missing file names no file."""
    for name in names:
        path = getattr(settings, name)
        if path and not os.access(path, os.R_OK):
            why = "no such file or folder" if not os.path.exists(path) else "not readable by this user"
            raise ConfigError(f"cannot read {name} {path}: {why}; fix {_flag(name)}")


def _certificate(context: ssl.SSLContext, settings: RuntimeSettings) -> None:
    cert, key = settings.tls_cert_file, settings.tls_key_file
    passphrase = settings.tls_key_file_pass
    try:
        context.load_cert_chain(cert, key, passphrase.get_secret_value() if passphrase else no_prompt)  # type: ignore[arg-type]
    except (ssl.SSLError, OSError) as exc:
        hint = (
            "check the passphrase in " + _flag("tls_key_file_pass")
            if passphrase
            else "an encrypted key needs its passphrase in " + _flag("tls_key_file_pass")
        )
        raise ConfigError(
            f"failed to load the TLS certificate {cert} with the key {key} ({exc}): both must be PEM files and the "
            f"key must be the certificate's; {hint}"
        ) from None


def _authorities(context: ssl.SSLContext, settings: RuntimeSettings) -> None:
    cafile, capath = settings.tls_ca_cert_file, settings.tls_ca_cert_dir
    if not cafile and not capath:
        if settings.tls_auth_clients != "no":
            raise ConfigError(
                f"tls_auth_clients is {settings.tls_auth_clients!r} but no CA certificate is given: set "
                f"{_flag('tls_ca_cert_file')} or {_flag('tls_ca_cert_dir')} to the CA that signs clients' "
                f"certificates, or {_flag('tls_auth_clients')} to 'no' (Redis refuses this too)"
            )
        return
    try:
        context.load_verify_locations(cafile=cafile, capath=capath)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"failed to load the CA certificates {cafile or capath} ({exc}); fix {_flag('tls_ca_cert_file')} or "
            f"{_flag('tls_ca_cert_dir')}"
        ) from None


def server_context(settings: RuntimeSettings) -> ssl.SSLContext | None:
    """The context of the TLS port, or None when runtime.tls_port is 0; a ConfigError names what is wrong."""
    if not settings.tls_port:
        return None
    for name in ("tls_cert_file", "tls_key_file"):
        if not getattr(settings, name):
            raise ConfigError(f"tls_port is {settings.tls_port} but no {name} is given: set {_flag(name)}")
    _readable(settings, "tls_cert_file", "tls_key_file", "tls_ca_cert_file", "tls_ca_cert_dir", "tls_dh_params_file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _protocols(context, settings.tls_protocols)
    _certificate(context, settings)
    _authorities(context, settings)
    context.verify_mode = _VERIFY[settings.tls_auth_clients]
    if settings.tls_ciphers:
        try:
            context.set_ciphers(settings.tls_ciphers)
        except ssl.SSLError as exc:
            raise ConfigError(f"tls_ciphers {settings.tls_ciphers!r}: {exc}; fix {_flag('tls_ciphers')}") from None
    if settings.tls_prefer_server_ciphers:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if settings.tls_dh_params_file:
        try:
            context.load_dh_params(settings.tls_dh_params_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"failed to load the DH parameters {settings.tls_dh_params_file} ({exc}); fix "
                f"{_flag('tls_dh_params_file')}"
            ) from None
    return context


def backing_tls(settings: RuntimeSettings) -> BackingTls | None:
    """How the links reach a rediss:// backing Redis (None for any other URL); a ConfigError names what is wrong.

    As a Redis replica reaches its master: tls_client_cert_file and tls_client_key_file, else the
    server's tls_cert_file and tls_key_file, where that Redis asks for a client certificate; the CA
    of tls_ca_cert_file or tls_ca_cert_dir, else the system's, to trust it.
    """
    if not (settings.backing_url or "").startswith("rediss://"):
        return None
    if settings.tls_client_cert_file or settings.tls_client_key_file:
        for name in ("tls_client_cert_file", "tls_client_key_file"):
            if not getattr(settings, name):
                raise ConfigError(f"a client certificate needs both files: set {_flag(name)} too")
        cert, key, secret = "tls_client_cert_file", "tls_client_key_file", settings.tls_client_key_file_pass
        pass_name = "tls_client_key_file_pass"
    else:
        cert, key, secret, pass_name = "tls_cert_file", "tls_key_file", settings.tls_key_file_pass, "tls_key_file_pass"
    _readable(settings, cert, key, "tls_ca_cert_file", "tls_ca_cert_dir")
    tls = BackingTls(  # absolute: a Gears worker reads them too, in a folder of its own
        ca_cert_file=_absolute(settings.tls_ca_cert_file), ca_cert_dir=_absolute(settings.tls_ca_cert_dir),
        cert_file=_absolute(getattr(settings, cert)), key_file=_absolute(getattr(settings, key)),
        key_file_pass=secret.get_secret_value() if secret else None,
    )  # fmt: skip
    if tls.cert_file and not tls.key_file:
        raise ConfigError(f"{cert} is given without its key: set {_flag(key)}")
    try:
        load_context(tls)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"failed to load the TLS files for the rediss:// backing Redis ({exc}): the CA certificates of "
            f"{_flag('tls_ca_cert_file')}, and {_flag(cert)} with the key of {_flag(key)} (PEM; an encrypted key "
            f"needs {_flag(pass_name)})"
        ) from None
    return tls


def _absolute(path: str | None) -> str | None:
    return os.path.abspath(path) if path else None
