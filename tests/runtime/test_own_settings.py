"""CONFIG GET and CONFIG SET of the runtime's own settings: its ports, protected mode and TLS, as Redis' own.

Before, these were relayed: `CONFIG GET port` answered the backing Redis' port, and `CONFIG SET
tls-cert-file` changed the backing Redis' setting and answered OK while the runtime's TLS port
went on showing the old certificate (a rotation that silently did nothing).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gearcam.bench.certs import signed
from tests.conftest import free_port
from tests.runtime.conftest import Backing, Runtime, runtime_in_front, the_client_holding_most_goes
from tests.runtime.tls_files import KEY_PASSPHRASE, Certificates, make_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def renewed(certs: Certificates) -> tuple[Path, Path]:
    """Another server certificate from the same CA (a renewal): its own key, its own name."""
    folder = certs.ca.parent
    signed(folder, "renewed", "ca", "/O=gearcam tests/CN=Renewed", "server.ext")
    return folder / "renewed.crt", folder / "renewed.key"


@pytest.fixture
def tls_runtime(backing: Backing, certs: Certificates) -> Iterator[tuple[Runtime, int]]:
    """A runtime of its own (the tests change where it listens) with a TLS port that wants client certificates."""
    tls_port = free_port()
    args = ["--tls-port", str(tls_port), "--tls-cert-file", str(certs.server_cert), "--tls-key-file",
            str(certs.server_key), "--tls-ca-cert-file", str(certs.ca)]  # fmt: skip
    with runtime_in_front(backing, args) as runtime:
        yield runtime, tls_port


def _served_name(port: int, certs: Certificates) -> str:
    """The common name of the certificate a new TLS connection to `port` is shown."""
    context = ssl.create_default_context(cafile=str(certs.ca))
    context.load_cert_chain(str(certs.client_cert), str(certs.client_key))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            cert = sock.getpeercert()
    assert cert is not None
    return next(value for field in cert["subject"] for key, value in field if key == "commonName")


def _tls_client(port: int, certs: Certificates) -> redis.Redis:
    return redis.Redis(port=port, ssl=True, ssl_ca_certs=str(certs.ca), ssl_certfile=str(certs.client_cert),
                       ssl_keyfile=str(certs.client_key), protocol=2, socket_timeout=30, retry=None)  # fmt: skip


def _error(client: redis.Redis, *args: str | bytes) -> str:
    with pytest.raises(redis.ResponseError) as caught:
        client.execute_command(*args)
    return str(caught.value)


def test_config_get_answers_the_runtime_own_ports_and_tls_files(
    tls_runtime: tuple[Runtime, int], backing: Backing, certs: Certificates
) -> None:
    runtime, tls_port = tls_runtime
    client, direct = runtime.client(), redis.Redis(port=backing.port)
    try:
        assert client.config_get("port") == {"port": str(runtime.port)}  # not the backing Redis' port
        assert direct.config_get("port") == {"port": str(backing.port)}
        assert client.config_get("tls-*")["tls-port"] == str(tls_port)
        assert client.config_get("tls-*")["tls-cert-file"] == str(certs.server_cert)
        assert client.config_get("tls-*")["tls-auth-clients"] == "yes"
        assert direct.config_get("tls-cert-file") == {"tls-cert-file": ""}
        # Several patterns, the backing Redis' parameters beside the runtime's, and every parameter at once.
        both = client.execute_command("CONFIG", "GET", "maxmemory-policy", "PORT", "bind")
        assert dict(zip(both[::2], both[1::2], strict=True)) == {
            b"maxmemory-policy": direct.config_get("maxmemory-policy")["maxmemory-policy"].encode(),
            b"PORT": str(runtime.port).encode(),
            b"bind": b"127.0.0.1 -::1",
        }  # fmt: skip (Redis names an exact parameter as it was asked)
        everything = client.config_get("*")
        assert everything["port"] == str(runtime.port) and everything["dir"] == str(backing.dir)
        assert client.config_get("protected-mode") == {"protected-mode": "yes"}
        resp3 = redis.Redis(port=runtime.port, protocol=3)
        try:
            assert resp3.config_get("port") == {"port": str(runtime.port)}  # a map in RESP3
        finally:
            resp3.close()
    finally:
        client.close()
        direct.close()


def test_config_set_tls_cert_file_reloads_what_new_clients_see_and_keeps_connected_ones(
    tls_runtime: tuple[Runtime, int], backing: Backing, certs: Certificates, renewed: tuple[Path, Path]
) -> None:
    runtime, tls_port = tls_runtime
    connected = _tls_client(tls_port, certs)
    client, direct = runtime.client(), redis.Redis(port=backing.port)
    try:
        connected.set("own:before", "1")
        assert _served_name(tls_port, certs) == "Server"
        cert, key = renewed
        assert client.config_set("tls-cert-file", str(cert), "tls-key-file", str(key)) is True
        assert _served_name(tls_port, certs) == "Renewed"
        assert connected.get("own:before") == b"1"  # its session goes on
        fresh = _tls_client(tls_port, certs)
        try:
            assert fresh.get("own:before") == b"1"
        finally:
            fresh.close()
        assert client.config_get("tls-cert-file") == {"tls-cert-file": str(cert)}
        assert direct.config_get("tls-cert-file") == {"tls-cert-file": ""}  # the backing Redis' is not touched
        # An encrypted key with its passphrase, which MONITOR shows redacted, as Redis does.
        with client.monitor() as monitor:
            assert client.config_set("tls-key-file", str(certs.encrypted_key), "tls-cert-file",
                                     str(certs.server_cert), "tls-key-file-pass", KEY_PASSPHRASE) is True  # fmt: skip
            line = next(c for c in iter(lambda: monitor.next_command()["command"], None) if c.startswith("CONFIG"))
        assert KEY_PASSPHRASE not in line and "tls-key-file-pass (redacted)" in line
        assert _served_name(tls_port, certs) == "Server"
        assert client.config_get("tls-key-file-pass") == {"tls-key-file-pass": KEY_PASSPHRASE}  # as Redis shows it
    finally:
        connected.close()
        client.close()
        direct.close()


def test_a_tls_change_that_does_not_load_is_refused_and_nothing_changes(
    tls_runtime: tuple[Runtime, int], certs: Certificates, renewed: tuple[Path, Path]
) -> None:
    runtime, tls_port = tls_runtime
    client = runtime.client()
    failed = (
        "CONFIG SET failed (possibly related to argument '{}') - Unable to update TLS configuration. Check server logs."
    )
    try:
        assert _error(client, "CONFIG", "SET", "tls-cert-file", "/nonexistent/server.crt") == failed.format(
            "tls-cert-file"
        )
        # A certificate with another certificate's key; a cipher list OpenSSL does not know; a bad DH file.
        assert _error(client, "CONFIG", "SET", "tls-cert-file", str(renewed[0])) == failed.format("tls-cert-file")
        assert _error(client, "CONFIG", "SET", "tls-ciphers", "NO-SUCH-CIPHER") == failed.format("tls-ciphers")
        assert _error(client, "CONFIG", "SET", "tls-protocols", "TLSv9") == failed.format("tls-protocols")
        assert _error(client, "CONFIG", "SET", "tls-key-file", str(certs.encrypted_key)) == failed.format(
            "tls-key-file"
        )  # an encrypted key without its passphrase
        assert _error(client, "CONFIG", "SET", "tls-auth-clients", "maybe") == (
            "CONFIG SET failed (possibly related to argument 'tls-auth-clients') - argument(s) must be one of "
            "the following: no, yes, optional"
        )
        assert client.config_get("tls-cert-file") == {"tls-cert-file": str(certs.server_cert)}
        assert client.config_get("tls-ciphers") == {"tls-ciphers": ""}
        assert _served_name(tls_port, certs) == "Server"
        log = runtime.output()
        assert "CONFIG SET tls-cert-file refused, the TLS port goes on as it was" in log
        assert "cannot read tls_cert_file /nonexistent/server.crt: no such file or folder" in log
        # A TLS port turned off, then on again with the same files.
        assert client.config_set("tls-port", "0") is True
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", tls_port), timeout=5).close()
        assert client.config_set("tls-port", str(tls_port)) is True
        assert _served_name(tls_port, certs) == "Server"
    finally:
        client.close()


def test_config_set_port_moves_the_runtime_and_keeps_its_clients(tls_runtime: tuple[Runtime, int]) -> None:
    runtime, _ = tls_runtime
    client = runtime.client()
    old, new = runtime.port, free_port()
    try:
        client.set("own:moved", "yes")
        assert client.config_set("port", str(new)) is True
        assert client.get("own:moved") == b"yes"  # connected before: still served
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", old), timeout=5).close()
        moved = redis.Redis(port=new)
        try:
            assert moved.get("own:moved") == b"yes"
            assert moved.config_get("port") == {"port": str(new)}
            assert moved.info("server")["tcp_port"] == new  # INFO too: before, the backing Redis' port
            taken = socket.create_server(("127.0.0.1", 0))
            try:
                busy = str(taken.getsockname()[1])
                assert _error(moved, "CONFIG", "SET", "port", busy) == (
                    "CONFIG SET failed (possibly related to argument 'port') - Unable to listen on this port. "
                    "Check server logs."
                )
            finally:
                taken.close()
            assert moved.config_get("port") == {"port": str(new)}
            assert moved.ping() is True
        finally:
            moved.close()
        assert client.config_set("port", str(old)) is True  # back, so the fixture's stop finds it
    finally:
        client.close()


def test_config_set_bind_moves_both_ports_to_the_address(tls_runtime: tuple[Runtime, int], certs: Certificates) -> None:
    runtime, tls_port = tls_runtime
    client = runtime.client()
    try:
        assert client.config_set("bind", "127.0.0.2") is True  # loopback too, another address of it
        assert client.config_get("bind") == {"bind": "127.0.0.2"}
        for port in (runtime.port, tls_port):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
        moved = redis.Redis(host="127.0.0.2", port=runtime.port)
        try:
            assert moved.ping() is True
            with socket.create_connection(("127.0.0.2", tls_port), timeout=5):
                pass  # the TLS port moved with it
            assert moved.config_set("bind", "127.0.0.1 -::1") is True
        finally:
            moved.close()
        assert client.ping() is True  # connected before both moves
        assert _served_name(tls_port, certs) == "Server"
    finally:
        client.close()


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def _serves(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError:  # refused; or, for ::1, no IPv6 on this machine
        return False
    return True


def _failed(name: str, why: str) -> str:
    return f"CONFIG SET failed (possibly related to argument '{name}') - {why}"


def test_config_set_bind_takes_several_addresses_as_redis_does(
    tls_runtime: tuple[Runtime, int], certs: Certificates
) -> None:
    """Redis' `bind 127.0.0.1 -::1` (its redis.conf's, and the runtime's default): several addresses, `-` before
    one the machine may lack. Before, the runtime listened on one address and refused a list."""
    runtime, tls_port = tls_runtime
    client = runtime.client()
    try:
        assert client.config_get("bind") == {"bind": "127.0.0.1 -::1"}
        if _has_ipv6_loopback():  # IPv6 clients of "localhost" (Node.js 17 and later resolve it to ::1 first)
            assert _serves("::1", runtime.port) and _serves("::1", tls_port)
        assert client.config_set("bind", "127.0.0.1 127.0.0.2") is True
        assert client.config_get("bind") == {"bind": "127.0.0.1 127.0.0.2"}
        assert all(_serves(host, port) for host in ("127.0.0.1", "127.0.0.2") for port in (runtime.port, tls_port))
        assert not _serves("::1", runtime.port)
        # The documented way to let other machines in, from a specific address to the wildcard of the same port
        # (the two cannot listen at once: the old one closes first, as in Redis). Before, Address already in use.
        assert client.config_set("bind", "0.0.0.0") is True
        assert _serves("127.0.0.3", runtime.port) and _serves("127.0.0.3", tls_port)
        # A change that fails after that closing listens where it did again.
        assert _error(client, "CONFIG", "SET", "bind", "127.0.0.1 203.0.113.7") == _failed(
            "bind", "Failed to bind to specified addresses."
        )
        assert client.config_get("bind") == {"bind": "0.0.0.0"} and _serves("127.0.0.3", runtime.port)
        # An address marked optional that this machine lacks is skipped, as Redis skips it.
        assert client.config_set("bind", "127.0.0.1 -203.0.113.7") is True
        assert _serves("127.0.0.1", runtime.port) and not _serves("127.0.0.3", runtime.port)
        assert client.ping() is True  # connected before every move
        assert _served_name(tls_port, certs) == "Server"
    finally:
        client.config_set("bind", "127.0.0.1 -::1")
        client.close()


@pytest.mark.parametrize(
    ("bind", "why"),
    [
        ("203.0.113.7", "Failed to bind to specified addresses."),  # TEST-NET-3: an address of no interface here
        ("-203.0.113.7", "Failed to bind to specified addresses."),  # only optional ones, all missing: nowhere
        ("127.0.0.1 127.0.0.1", "Failed to bind to specified addresses."),  # Redis binds it twice and fails
        (" ".join(f"127.0.0.{i}" for i in range(1, 18)), "Too many bind addresses specified."),
        ("", "an empty bind would listen nowhere: name at least one address (* for every IPv4 one)"),
        ("127.0.0.1 -", "'-' names no address: write '-' right before an address (-::1)"),
    ],
)
def test_a_bind_list_redis_refuses_leaves_the_runtime_listening_as_it_did(
    tls_runtime: tuple[Runtime, int], bind: str, why: str
) -> None:
    runtime, tls_port = tls_runtime
    client = runtime.client()
    try:
        assert _error(client, "CONFIG", "SET", "bind", bind) == _failed("bind", why)
        assert client.config_get("bind") == {"bind": "127.0.0.1 -::1"}
        assert _serves("127.0.0.1", runtime.port) and _serves("127.0.0.1", tls_port)
    finally:
        client.close()


def test_what_config_set_refuses_to_change_here_names_why(tls_runtime: tuple[Runtime, int], backing: Backing) -> None:
    runtime, tls_port = tls_runtime
    client, direct = runtime.client(), redis.Redis(port=backing.port)

    def failed(name: str, why: str) -> str:
        return f"CONFIG SET failed (possibly related to argument '{name}') - {why}"

    try:
        before = direct.config_get("maxmemory")
        assert _error(client, "CONFIG", "SET", "port", "7000", "maxmemory", "1mb") == failed(
            "maxmemory", "the gearcam runtime sets port itself and relays maxmemory to its backing Redis: send them "
            "in two CONFIG SET commands"
        )  # fmt: skip
        assert direct.config_get("maxmemory") == before and client.config_get("port") == {"port": str(runtime.port)}
        assert _error(client, "CONFIG", "SET", "port", "1", "PORT", "2") == failed("port", "duplicate parameter")
        assert _error(client, "CONFIG", "SET", "port", "x") == failed(
            "port", "argument couldn't be parsed into an integer"
        )
        assert _error(client, "CONFIG", "SET", "tls-port", "70000") == failed(
            "tls-port", "argument must be between 0 and 65535 inclusive"
        )
        assert _error(client, "CONFIG", "SET", "protected-mode", "maybe") == failed(
            "protected-mode", "argument must be 'yes' or 'no'"
        )
        assert _error(client, "CONFIG", "SET", "unixsocket", "/tmp/x.sock") == failed(
            "unixsocket", "can't set immutable config"
        )
        assert _error(client, "CONFIG", "SET", "bind", b"\xff\x00") == failed(
            "bind", "Failed to bind to specified addresses."
        )
        # The links' client certificate: kept, used by nothing without a rediss:// backing (test_backing_tls.py).
        assert client.config_set("tls-client-cert-file", "/x.crt") is True
        assert client.config_get("tls-client-cert-file") == {"tls-client-cert-file": "/x.crt"}
        assert client.config_set("tls-client-cert-file", "") is True
        assert "default TLSv1.3 cipher suites" in _error(client, "CONFIG", "SET", "tls-ciphersuites", "X")
        # Listening nowhere is refused, as at start.
        assert client.config_set("tls-port", "0") is True
        assert "the runtime would listen nowhere" in _error(client, "CONFIG", "SET", "port", "0")
        assert client.config_set("tls-port", str(tls_port)) is True
        # Protected mode is the runtime's (it turns away remote clients of its own port); the backing's stays.
        assert client.config_set("protected-mode", "no") is True
        assert client.config_get("protected-mode") == {"protected-mode": "no"}
        assert direct.config_get("protected-mode") == {"protected-mode": "yes"}
        # The backing Redis' own parameters are still relayed, a wrong number of arguments as Redis answers it.
        assert client.config_set("maxmemory-samples", "6") is True and direct.config_get("maxmemory-samples") == {
            "maxmemory-samples": "6"
        }
        assert _error(client, "CONFIG", "SET", "port") == "wrong number of arguments for 'config|set' command"
    finally:
        direct.config_set("maxmemory-samples", "5")
        client.close()
        direct.close()


def test_a_user_without_config_set_is_refused_as_redis_refuses_it(
    tls_runtime: tuple[Runtime, int], backing: Backing
) -> None:
    runtime, _ = tls_runtime
    admin = redis.Redis(port=backing.port)
    admin.acl_setuser("own-settings-viewer", enabled=True, passwords=["+pw"], commands=["+@all", "-config|set"],
                      keys=["*"])  # fmt: skip
    viewer = redis.Redis(port=runtime.port, username="own-settings-viewer", password="pw")
    direct = redis.Redis(port=backing.port, username="own-settings-viewer", password="pw")
    try:
        refused = _error(direct, "CONFIG", "SET", "port", "1")
        assert refused == "this user has no permissions to run the 'config|set' command"
        assert _error(viewer, "CONFIG", "SET", "tls-port", "0") == refused
        assert viewer.config_get("port") == {"port": str(runtime.port)}  # CONFIG GET it may run
        (flat,) = runtime.client().execute_command("ACL", "LOG", "1")  # the runtime's: Redis' entries and its own
        entry = dict(zip(flat[::2], flat[1::2], strict=True))
        assert (entry[b"object"], entry[b"username"], entry[b"reason"]) == (
            b"config|set", b"own-settings-viewer", b"command"
        )  # fmt: skip
        assert runtime.client().config_get("tls-port")["tls-port"] != "0"
    finally:
        viewer.close()
        direct.close()
        admin.acl_deluser("own-settings-viewer")
        admin.close()


def _read_until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    reply = b""
    try:
        while chunk := sock.recv(65536):
            reply += chunk
    except ConnectionResetError:
        pass
    return reply


def test_the_client_limits_are_the_runtimes_and_apply_to_connected_clients(backing: Backing) -> None:
    """client-query-buffer-limit and maxmemory-clients bound what clients send, which the runtime's parser checks
    before Redis sees a command: a CONFIG SET applies to every client at once, connected ones too, and leaves the
    backing Redis' own (whose clients are the runtime's links) as they were. Before, it changed only the backing
    Redis' setting, and the runtime kept taking requests of up to its own 1 GiB."""
    direct = redis.Redis(port=backing.port)
    with runtime_in_front(backing, []) as runtime:
        client = runtime.client()
        early = socket.create_connection(("127.0.0.1", runtime.port), timeout=10)  # connected before the change
        try:
            gib = str(1 << 30)
            assert client.config_get("client-query-buffer-limit") == {"client-query-buffer-limit": gib}
            assert client.config_get("maxmemory-clients") == {"maxmemory-clients": gib}
            backing_limit = direct.config_get("client-query-buffer-limit")
            refusals = [
                ("client-query-buffer-limit", "1000", "argument must be between 1048576 and 9223372036854775807 inclusive"),
                ("client-query-buffer-limit", "abc", "argument must be a memory value"),
                ("client-query-buffer-limit", "10%", "argument must be a memory value"),
                ("maxmemory-clients", "-1", "argument must be a memory or percent value"),
            ]  # fmt: skip
            for name, value, why in refusals:  # as redis-server 7.0.15 answers them
                assert _error(client, "CONFIG", "SET", name, value) == _failed(name, why)
            assert "not as a share of the backing Redis' maxmemory" in _error(
                client, "CONFIG", "SET", "maxmemory-clients", "10%"
            )
            assert client.config_set("client-query-buffer-limit", "1mb") is True
            assert client.config_get("client-query-buffer-limit") == {"client-query-buffer-limit": "1048576"}
            assert direct.config_get("client-query-buffer-limit") == backing_limit
            assert client.set("limits:small", b"x" * (512 << 10)) is True
            try:  # refused as the bytes arrive, as Redis refuses a query buffer that grew past its limit
                early.sendall(b"*3\r\n$3\r\nSET\r\n$10\r\nlimits:big\r\n$%d\r\n" % (2 << 20) + b"x" * (2 << 20))
            except OSError:
                pass  # reset by the runtime while sending
            reply = _read_until_closed(early)
            assert reply.startswith(b"-ERR Protocol error: request of ") and b"of 1048576 bytes" in reply
            assert b"CONFIG SET client-query-buffer-limit" in reply
            assert direct.exists("limits:big") == 0

            assert client.config_set("client-query-buffer-limit", "1gb", "maxmemory-clients", "3mb") is True
            assert client.config_get("maxmemory-clients") == {"maxmemory-clients": str(3 << 20)}
            the_client_holding_most_goes(runtime.port, 3 << 20)
            assert "CONFIG SET maxmemory-clients" in runtime.output()
            assert client.config_set("maxmemory-clients", "0") is True  # no limit, as in Redis
            assert client.set("limits:after", b"x" * (4 << 20)) is True
        finally:
            early.close()
            client.close()
            direct.close()
