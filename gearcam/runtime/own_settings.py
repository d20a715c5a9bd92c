"""CONFIG GET and CONFIG SET of what the runtime holds itself: its ports, protected mode, TLS, and the limits on
its clients (the query buffer, maxmemory-clients, which its request parser applies; maxclients).

Through the runtime every other CONFIG parameter is the backing Redis' and is relayed. These
few describe the server a client talks to, which is the runtime: `CONFIG GET port` answers
the port the client reached, and `CONFIG SET tls-cert-file` reloads the certificate the
runtime's TLS port shows (Redis reloads its certificates that way, without a restart: how an
operator rotates them), where relaying it would have changed the backing Redis' settings and
left the runtime's as they were, answering OK. Replies and errors are Redis 7.0's.

A CONFIG SET naming these and the backing Redis' parameters together is refused (it would be
two servers' changes in one command, which cannot be applied atomically); inside MULTI, CONFIG
is relayed as it is (docs/runtime.md, "Changing certificates and ports while it runs").
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr, ValidationError

from gearcam.config import RuntimeSettings, bind_addresses
from gearcam.errors import ConfigError
from gearcam.runtime import open_files
from gearcam.runtime.backing_tls import BackingTls
from gearcam.runtime.listeners import Listeners, ListenFailed
from gearcam.runtime.request import memory_bytes
from gearcam.runtime.resp import ErrorReply
from gearcam.runtime.tls import backing_tls, server_context

__all__ = ["OWNED_NAMES", "amend_get", "apply", "parse_set", "redacted", "takes"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Owned:
    attribute: str  # RuntimeSettings'
    kind: str  # how Redis parses and shows it: port, bool, text, secret, choice, address, memory, count
    tls: bool = False  # part of the TLS port's context: a change builds a new one
    fixed: str | None = None  # why CONFIG SET cannot change it here (None: it can)
    links: bool = False  # read by the links to a rediss:// backing Redis: a change renews theirs (backing_tls.renew)


_OWNED: dict[str, _Owned] = {
    "port": _Owned("port", "port"),
    "tls-port": _Owned("tls_port", "port", tls=True),
    "protected-mode": _Owned("protected_mode", "bool"),
    "tls-cert-file": _Owned("tls_cert_file", "text", tls=True, links=True),
    "tls-key-file": _Owned("tls_key_file", "text", tls=True, links=True),
    "tls-key-file-pass": _Owned("tls_key_file_pass", "secret", tls=True, links=True),
    "tls-ca-cert-file": _Owned("tls_ca_cert_file", "text", tls=True, links=True),
    "tls-ca-cert-dir": _Owned("tls_ca_cert_dir", "text", tls=True, links=True),
    "tls-auth-clients": _Owned("tls_auth_clients", "choice", tls=True),
    "tls-protocols": _Owned("tls_protocols", "text", tls=True),
    "tls-ciphers": _Owned("tls_ciphers", "text", tls=True),
    "tls-prefer-server-ciphers": _Owned("tls_prefer_server_ciphers", "bool", tls=True),
    "tls-dh-params-file": _Owned("tls_dh_params_file", "text", tls=True),
    "bind": _Owned("host", "address"),
    "unixsocket": _Owned("unixsocket", "text", fixed="can't set immutable config"),
    "tls-client-cert-file": _Owned("tls_client_cert_file", "text", links=True),
    "tls-client-key-file": _Owned("tls_client_key_file", "text", links=True),
    "tls-client-key-file-pass": _Owned("tls_client_key_file_pass", "secret", links=True),
    # Limits on the runtime's clients, which the runtime's request parser applies before Redis sees a command.
    "client-query-buffer-limit": _Owned("max_request_size", "memory"),
    "maxmemory-clients": _Owned("maxmemory_clients", "memory"),
    "maxclients": _Owned("maxclients", "count"),
    # Python's ssl cannot choose TLSv1.3's suites: OpenSSL's defaults are served.
    "tls-ciphersuites": _Owned("", "text", fixed="the gearcam runtime serves OpenSSL's default TLSv1.3 cipher suites"),
}
OWNED_NAMES = frozenset(_OWNED)  # what CONFIG SET changes in the runtime, not in the backing Redis
_CHOICES = ("no", "yes", "optional")  # tls-auth-clients, in Redis' order
_SECRETS = frozenset(name for name, owned in _OWNED.items() if owned.kind == "secret")


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _names(args: list[bytes]) -> list[str]:
    """The parameters a CONFIG SET names, lower case (Redis' names are)."""
    return [_text(name).lower() for name in args[2::2]]


def _matches(patterns: list[bytes]) -> list[str]:
    """The owned names CONFIG GET's glob patterns match (Redis matches without case)."""
    lowered = [_text(pattern).lower() for pattern in patterns]
    return [name for name in _OWNED if any(fnmatch.fnmatchcase(name, pattern) for pattern in lowered)]


def takes(args: list[bytes]) -> bool:
    """Whether the runtime answers this CONFIG (it names one of its settings); else it is relayed as it is."""
    if len(args) < 3:
        return False
    sub = args[1].upper()
    if sub == b"GET":
        return bool(_matches(args[2:]))
    return sub == b"SET" and len(args) % 2 == 0 and any(name in _OWNED for name in _names(args))


def redacted(args: list[bytes]) -> list[bytes]:
    """A CONFIG SET as MONITOR shows it: the values of passphrases redacted, as Redis does."""
    shown = list(args)
    for i in range(2, len(args) - 1, 2):
        if _text(args[i]).lower() in _SECRETS:
            shown[i + 1] = b"(redacted)"
    return shown


def _shown(settings: RuntimeSettings, owned: _Owned) -> bytes:
    value = getattr(settings, owned.attribute) if owned.attribute else None
    if owned.kind == "bool":
        return b"yes" if value else b"no"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return b"" if value is None else str(value).encode()


def amend_get(reply: Any, patterns: list[bytes], settings: RuntimeSettings, protocol: int) -> Any:
    """CONFIG GET's reply from the backing Redis with the runtime's values for its own parameters.

    A map in RESP3, pairs in RESP2, whichever the link it was asked on speaks (a restricted user's
    commands run on the runtime's own link, which speaks RESP2).
    """
    wanted = {name: _shown(settings, _OWNED[name]) for name in _matches(patterns)}
    if isinstance(reply, dict):  # RESP3: a map
        pairs = [(_text(key), value) for key, value in reply.items()]
    else:
        pairs = [(_text(reply[i]), reply[i + 1]) for i in range(0, len(reply) - 1, 2)]
    seen = {name.lower() for name, _ in pairs}  # Redis names an exact parameter as it was asked (`PORT`)
    pairs = [(name, wanted.get(name.lower(), value)) for name, value in pairs]
    pairs += [(name, value) for name, value in wanted.items() if name not in seen]  # a Redis built without TLS
    if protocol == 3:
        return {name.encode(): value for name, value in pairs}
    return [item for name, value in pairs for item in (name.encode(), value)]


def _failed(name: str, reason: str) -> ErrorReply:
    return ErrorReply(f"ERR CONFIG SET failed (possibly related to argument '{name}') - {reason}")


def _parsed(name: str, owned: _Owned, raw: bytes) -> Any:
    text = _text(raw)
    if owned.kind in _INTEGER_BOUNDS:
        return _integer(name, text, *_INTEGER_BOUNDS[owned.kind])
    if owned.kind == "bool":
        if text.lower() not in ("yes", "no"):
            raise _failed(name, "argument must be 'yes' or 'no'")
        return text.lower() == "yes"
    if owned.kind == "choice":
        if text.lower() not in _CHOICES:
            raise _failed(name, "argument(s) must be one of the following: " + ", ".join(_CHOICES))
        return text.lower()
    if owned.kind == "address":
        return _address(name, text)
    if owned.kind == "memory":
        return _memory(name, raw)
    if owned.kind == "secret":
        return SecretStr(text) if text else None
    if owned.attribute == "tls_protocols":
        return text or "TLSv1.2 TLSv1.3"  # Redis' empty value: its default versions
    return text or None


# Integer kinds and their bounds, as Redis 7.0 has them: ports, and maxclients (a count).
_INTEGER_BOUNDS = {"port": (0, 65535), "count": (1, 4294967295)}


def _integer(name: str, text: str, least: int, most: int) -> int:
    try:
        number = int(text)
    except ValueError:
        raise _failed(name, "argument couldn't be parsed into an integer") from None
    if not least <= number <= most:
        raise _failed(name, f"argument must be between {least} and {most} inclusive")
    return number


# The least each takes, as Redis 7.0 bounds them (a query buffer of 1 MB; maxmemory-clients 0 is no limit).
_MEMORY_MIN = {"client-query-buffer-limit": 1024 * 1024, "maxmemory-clients": 0}
_MEMORY_MAX = 9223372036854775807


def _memory(name: str, raw: bytes) -> int:
    """A size in bytes as Redis reads its memory settings (`64mb`, `1gb`, `1048576`), refused in Redis' words."""
    if name == "maxmemory-clients" and raw.strip().endswith(b"%"):
        raise _failed(
            name,
            "the gearcam runtime takes maxmemory-clients in bytes (what its clients' unfinished requests may hold "
            "together), not as a share of the backing Redis' maxmemory",
        )
    try:
        number = memory_bytes(raw) if raw.strip() else 0  # Redis reads an empty value as 0
    except (ValueError, KeyError):
        number = -1
    if number < 0:
        kind = "a memory or percent value" if name == "maxmemory-clients" else "a memory value"
        raise _failed(name, f"argument must be {kind}")
    if not _MEMORY_MIN[name] <= number <= _MEMORY_MAX:
        raise _failed(name, f"argument must be between {_MEMORY_MIN[name]} and {_MEMORY_MAX} inclusive")
    return number


def _address(name: str, text: str) -> str:
    """Redis' `bind`: addresses separated by spaces, `-` before an optional one, kept as written."""
    words = text.split()
    if not words:
        raise _failed(name, "an empty bind would listen nowhere: name at least one address (* for every IPv4 one)")
    try:
        bind_addresses(text)
    except ValueError as exc:
        raise _failed(name, str(exc)) from None
    return " ".join(words)


def parse_set(args: list[bytes]) -> dict[str, Any]:
    """CONFIG SET's owned parameters and their values (by Redis name), or Redis' refusal as an ErrorReply."""
    given = _names(args)
    for i, name in enumerate(given):
        if name in given[:i]:
            raise _failed(name, "duplicate parameter")
    owned = [name for name in given if name in _OWNED]
    others = [name for name in given if name not in _OWNED]
    if others:
        raise _failed(
            others[0],
            f"the gearcam runtime sets {', '.join(owned)} itself and relays {', '.join(others)} to its backing "
            "Redis: send them in two CONFIG SET commands",
        )
    changes = {}
    for name, raw in zip(given, args[3::2], strict=True):
        entry = _OWNED[name]
        if entry.fixed is not None:
            raise _failed(name, entry.fixed)
        changes[name] = _parsed(name, entry, raw)
    return changes


async def apply(
    settings: RuntimeSettings,
    listeners: Listeners,
    changes: dict[str, Any],
    renew_links: Callable[[BackingTls], None] | None = None,
) -> None:
    """Make `changes` the runtime's settings, all of them or none: ports rebound, the TLS context rebuilt, and
    the files of the links to a rediss:// backing Redis handed to `renew_links` (their new links read them).

    What fails is logged with its cause and the fix, and answered with Redis' words.
    """
    attributes = {_OWNED[name].attribute: value for name, value in changes.items()}
    first = next(iter(changes))
    if "maxclients" in changes and (fitted := open_files.fit(changes["maxclients"])) < changes["maxclients"]:
        raise _failed(
            "maxclients",
            f"The operating system is not able to handle the specified number of clients, try with {fitted}",
        )
    try:
        then = RuntimeSettings.model_validate({**dict(settings), **attributes})
    except ValidationError as exc:
        raise _failed(first, exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    tls = listeners.tls
    touched = [name for name in changes if _OWNED[name].tls]
    if touched:
        try:
            tls = server_context(then)
        except ConfigError as exc:
            logger.warning("CONFIG SET %s refused, the TLS port goes on as it was: %s", " ".join(touched), exc)
            raise _failed(touched[0], "Unable to update TLS configuration. Check server logs.") from None
    files = None
    linked = [name for name in changes if _OWNED[name].links]
    if linked and renew_links is not None:
        try:
            files = backing_tls(then)  # None where the backing Redis is not reached over TLS
        except ConfigError as exc:
            logger.warning("CONFIG SET %s refused, the links to the backing Redis go on as they were: %s",
                           " ".join(linked), exc)  # fmt: skip
            raise _failed(linked[0], "Unable to update TLS configuration. Check server logs.") from None
    try:
        await listeners.change(settings, then, tls)
    except ListenFailed as exc:
        logger.warning("CONFIG SET %s refused, the runtime listens as it did: %s", " ".join(changes), exc)
        if "bind" in changes:
            raise _failed("bind", "Failed to bind to specified addresses.") from None
        raise _failed(exc.setting, "Unable to listen on this port. Check server logs.") from None
    # Validated together above; set one by one, a port of 0 could read as "listen nowhere" in between.
    settings.__dict__.update((attribute, getattr(then, attribute)) for attribute in attributes)
    if files is not None and renew_links is not None:
        renew_links(files)
    logger.info("CONFIG SET %s: applied", " ".join(changes))
