"""TLS on the runtime's tls_port, with Redis' tls-* settings: what is served, who is refused, what stops it."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import redis

from gearcam.camera.producer import Producer
from gearcam.camera.sources import parse_source
from gearcam.config import CameraSettings, load_settings
from tests.conftest import free_port
from tests.runtime.conftest import ROOT, Backing, Runtime, runtime_in_front, wait_ready
from tests.runtime.models import add_model
from tests.runtime.tls_files import KEY_PASSPHRASE, Certificates, make_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def _server_args(certs: Certificates, tls_port: int, *extra: str) -> list[str]:
    return ["--tls-port", str(tls_port), "--tls-cert-file", str(certs.server_cert), "--tls-key-file",
            str(certs.server_key), "--tls-ca-cert-file", str(certs.ca), *extra]  # fmt: skip


@pytest.fixture(scope="module")
def tls_runtime(backing: Backing, certs: Certificates) -> Iterator[tuple[Runtime, int]]:
    """A runtime serving its plain port and a TLS port that wants client certificates (Redis' default)."""
    tls_port = free_port()
    with runtime_in_front(backing, _server_args(certs, tls_port)) as runtime:
        yield runtime, tls_port


def _client(port: int, certs: Certificates, cert: Path | None = None, key: Path | None = None) -> redis.Redis:
    return redis.Redis(port=port, ssl=True, ssl_ca_certs=str(certs.ca), ssl_certfile=str(cert) if cert else None,
                       ssl_keyfile=str(key) if key else None, protocol=2, socket_timeout=30, retry=None)  # fmt: skip


def test_a_tls_client_is_served_as_a_plain_one_is(tls_runtime: tuple[Runtime, int], certs: Certificates) -> None:
    runtime, tls_port = tls_runtime
    plain = runtime.client()
    client = _client(tls_port, certs, certs.client_cert, certs.client_key)
    try:
        plain.set("tls:written-plain", "seen")
        assert client.get("tls:written-plain") == b"seen"
        # 8 MB each way: the request read into its tensor through the TLS layer, the reply written through it
        # (never around it, as a large reply to a plain client is written straight to its socket).
        tensor = np.random.default_rng(0).standard_normal((2048, 1024)).astype(np.float32)
        assert client.execute_command("AI.TENSORSET", "tls:t", "FLOAT", 2048, 1024, "BLOB", tensor.tobytes()) == b"OK"
        assert client.execute_command("AI.TENSORGET", "tls:t", "BLOB") == tensor.tobytes()
        assert plain.execute_command("AI.TENSORGET", "tls:t", "BLOB") == tensor.tobytes()
        client.execute_command("AI.MODELSTORE", "tls:m", "ONNX", "CPU", "BLOB", add_model())
        client.execute_command("AI.TENSORSET", "tls:a", "FLOAT", 1, 2, "VALUES", 1, 2)
        client.execute_command("AI.MODELEXECUTE", "tls:m", "INPUTS", 2, "tls:a", "tls:a", "OUTPUTS", 1, "tls:c")
        assert client.execute_command("AI.TENSORGET", "tls:c", "VALUES") == [b"2", b"4"]
        results, errors = client.execute_command("RG.PYEXECUTE", "GB().map(lambda r: r['key']).run('tls:written*')")
        assert [results, errors] == [[b"tls:written-plain"], []]
        info = client.execute_command("CLIENT", "INFO").decode()
        assert f" laddr=127.0.0.1:{tls_port} " in info  # listed where it came in: the TLS port
    finally:
        client.close()
        plain.close()


def test_pipelined_frames_over_tls_arrive_whole_and_in_order(
    tls_runtime: tuple[Runtime, int], certs: Certificates
) -> None:
    _, tls_port = tls_runtime
    client = _client(tls_port, certs, certs.client_cert, certs.client_key)
    try:
        client.delete("tls:frames")
        frames = [bytes([i]) * (100_000 + i) for i in range(60)]
        pipe = client.pipeline(transaction=False)
        for frame in frames:
            pipe.xadd("tls:frames", {"img": frame})
        pipe.execute()
        stored = client.xrange("tls:frames")
        assert [fields[b"img"] for _, fields in stored] == frames
    finally:
        client.close()


@pytest.mark.parametrize("who", ["no certificate", "a certificate another CA signed"])
def test_a_client_without_a_certificate_the_ca_signed_is_refused(
    tls_runtime: tuple[Runtime, int], certs: Certificates, who: str
) -> None:
    runtime, tls_port = tls_runtime
    cert, key = (None, None) if who == "no certificate" else (certs.stranger_cert, certs.stranger_key)
    refused = _client(tls_port, certs, cert, key)
    with pytest.raises(redis.ConnectionError):
        refused.ping()  # TLS 1.3 sends the refusal after the handshake: it meets the first command
    refused.close()
    client = _client(tls_port, certs, certs.client_cert, certs.client_key)
    assert client.ping()  # and the port serves on
    client.close()
    assert "Traceback" not in runtime.output()


def test_a_camera_on_another_device_sends_frames_by_a_rediss_url(
    tls_runtime: tuple[Runtime, int], certs: Certificates
) -> None:
    """Every gearcam client takes REDIS_URL through redis-py's from_url: TLS is a rediss:// URL with its files."""
    runtime, tls_port = tls_runtime
    url = (f"rediss://localhost:{tls_port}/0?ssl_ca_certs={certs.ca}&ssl_certfile={certs.client_cert}"
           f"&ssl_keyfile={certs.client_key}")  # fmt: skip
    camera = CameraSettings(stream="camera:tls", fps=50, width=160, height=120)
    stats = Producer(parse_source("samples"), camera, url).run(max_frames=5)
    plain = runtime.client()
    entries = plain.xrange("camera:tls")
    plain.delete("camera:tls")
    plain.close()
    assert stats.produced == 5 and [int(fields[b"count"]) for _, fields in entries] == [1, 2, 3, 4, 5]
    assert all(fields[b"img"][:3] == b"\xff\xd8\xff" for _, fields in entries)


def test_plain_text_on_the_tls_port_is_not_served(tls_runtime: tuple[Runtime, int]) -> None:
    _, tls_port = tls_runtime
    with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        try:
            answer = sock.recv(1024)
        except ConnectionResetError:
            answer = b""
    assert b"PONG" not in answer  # a TLS alert or a closed connection, never a reply


def test_optional_client_certificates_and_the_protocols_served(backing: Backing, certs: Certificates) -> None:
    tls_port = free_port()
    args = _server_args(certs, tls_port, "--tls-auth-clients", "optional", "--tls-protocols", "TLSv1.3")
    with runtime_in_front(backing, args):
        anonymous = _client(tls_port, certs)
        assert anonymous.ping()  # optional: no certificate is needed
        anonymous.close()
        stranger = _client(tls_port, certs, certs.stranger_cert, certs.stranger_key)
        with pytest.raises(redis.ConnectionError):
            stranger.ping()  # but one that is shown must be the CA's
        stranger.close()
        old = ssl.create_default_context(cafile=str(certs.ca))
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as sock, pytest.raises(ssl.SSLError):
            old.wrap_socket(sock, server_hostname="127.0.0.1")  # TLSv1.3 only: a TLSv1.2 client is refused


def _launch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gearcam.runtime", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip


@contextmanager
def _tls_only(backing: Backing, certs: Certificates) -> Iterator[tuple[int, list[str]]]:
    """A runtime with no plain port (--port 0, as Redis' port 0) and an encrypted key; yields its TLS port and,
    once stopped, leaves its log in the list."""
    tls_port = free_port()
    args = ["--redis-url", backing.url, "--port", "0", "--tls-port", str(tls_port), "--tls-cert-file",
            str(certs.server_cert), "--tls-key-file", str(certs.encrypted_key), "--tls-key-file-pass", KEY_PASSPHRASE,
            "--tls-ca-cert-file", str(certs.ca)]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "gearcam.runtime", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)  # fmt: skip
    logged: list[str] = []
    try:
        client = _client(tls_port, certs, certs.client_cert, certs.client_key)
        wait_ready(tls_port, 60, proc, client)
        client.close()
        yield tls_port, logged
    finally:
        proc.terminate()
        logged.append(proc.communicate(timeout=30)[1])


def test_tls_only_with_an_encrypted_key(backing: Backing, certs: Certificates) -> None:
    with _tls_only(backing, certs) as (tls_port, logged):
        client = _client(tls_port, certs, certs.client_cert, certs.client_key)
        assert client.execute_command("AI.TENSORSET", "tls:only", "FLOAT", 2, "VALUES", 1, 2) == b"OK"
        assert client.execute_command("AI.TENSORGET", "tls:only", "VALUES") == [b"1", b"2"]
        client.close()
    assert f"ready on 127.0.0.1:{tls_port} (TLS, client certificates: yes)" in logged[0]  # then [::1], if here
    assert "Traceback" not in logged[0]


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli (Debian's redis-tools) is not installed")
def test_redis_cli_tls_is_the_operators_check(backing: Backing, certs: Certificates) -> None:
    with _tls_only(backing, certs) as (tls_port, _):
        cli = ["redis-cli", "--tls", "--cacert", str(certs.ca), "--cert", str(certs.client_cert), "--key",
               str(certs.client_key), "-p", str(tls_port)]  # fmt: skip
        assert subprocess.run([*cli, "PING"], capture_output=True, text=True, timeout=10).stdout.strip() == "PONG"
        info = subprocess.run([*cli, "RG.PYEXECUTE", "GB('ShardsIDReader').run()"], capture_output=True, text=True,
                              timeout=60).stdout  # fmt: skip
        assert info.split() == ["1"]  # raw output (no terminal): the one record, no errors
        plain = subprocess.run(["redis-cli", "-p", str(tls_port), "PING"], capture_output=True, text=True, timeout=10)
        assert "PONG" not in plain.stdout


def test_a_runtime_listening_nowhere_is_refused(backing: Backing) -> None:
    done = _launch("--redis-url", backing.url, "--port", "0")
    assert done.returncode == 1
    assert "would listen nowhere" in done.stderr and "Traceback" not in done.stderr


def test_a_port_another_process_holds_stops_the_runtime_with_the_fix(backing: Backing) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = _launch("--redis-url", backing.url, "--port", str(port), timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    assert (
        f"cannot listen for port on 127.0.0.1:{port}: Address already in use; free it, or choose another with "
        "--port (runtime.port, GEARCAM_RUNTIME__PORT) or --host" in done.stderr
    )
    assert "Traceback" not in done.stderr


def test_an_address_this_machine_lacks_stops_the_runtime_unless_marked_optional(backing: Backing) -> None:
    """Redis' bind list at start: an address no interface has (TEST-NET-3) stops it with the fix, one marked
    optional with '-' is skipped with a warning, and only optional ones all missing is listening nowhere."""
    port = free_port()
    missing = _launch("--redis-url", backing.url, "--port", str(port), "--host", "127.0.0.1 203.0.113.7")
    assert missing.returncode == 1, missing.stderr[-2000:]
    assert (
        f"cannot listen for port on 203.0.113.7:{port}: Cannot assign requested address; this machine has no such "
        "address: name one it has with --host (runtime.host, GEARCAM_RUNTIME__HOST), or mark it optional as Redis' "
        "bind does ('-203.0.113.7')" in missing.stderr
    )
    nowhere = _launch("--redis-url", backing.url, "--port", str(port), "--host=-203.0.113.7")
    assert nowhere.returncode == 1, nowhere.stderr[-2000:]
    assert "cannot listen for port on any address of '-203.0.113.7' (none of them is on this machine)" in nowhere.stderr
    assert "Traceback" not in missing.stderr + nowhere.stderr
    with runtime_in_front(backing, ["--host", "127.0.0.1 -203.0.113.7"]) as runtime:
        assert runtime.client().config_get("bind") == {"bind": "127.0.0.1 -203.0.113.7"}
        assert f"not listening on 203.0.113.7:{runtime.port}: Cannot assign requested address (skipped" in (
            runtime.output()
        )


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"--tls-ca-cert-file": None}, "no CA certificate is given"),
        ({"--tls-key-file": None}, "no tls_key_file is given"),
        ({"--tls-protocols": "TLSv9"}, "use a combination of 'TLSv1', 'TLSv1.1', 'TLSv1.2' and 'TLSv1.3'"),
        ({"--tls-cert-file": "missing.crt"}, "cannot read tls_cert_file missing.crt: no such file"),
        ({"--tls-key-file": "ENCRYPTED"}, "an encrypted key needs its passphrase in --tls-key-file-pass"),
        ({"--tls-key-file": "ENCRYPTED", "--tls-key-file-pass": "wrong"}, "the passphrase in --tls-key-file-pass"),
        ({"--tls-key-file": "CLIENT"}, "the key must be the certificate's"),
        ({"--tls-ca-cert-file": "missing-ca.crt"}, "cannot read tls_ca_cert_file missing-ca.crt"),
        ({"--tls-ciphers": "NO-SUCH-CIPHER"}, "tls_ciphers 'NO-SUCH-CIPHER'"),
    ],
)
def test_tls_settings_redis_would_refuse_stop_the_runtime_with_the_fix(
    backing: Backing, certs: Certificates, change: dict[str, str | None], said: str
) -> None:
    """At once, before the backing Redis is reached, and never waiting at a passphrase prompt."""
    named = {"ENCRYPTED": str(certs.encrypted_key), "CLIENT": str(certs.client_key)}
    options: dict[str, str | None] = {"--tls-port": str(free_port()), "--tls-cert-file": str(certs.server_cert),
                                      "--tls-key-file": str(certs.server_key), "--tls-ca-cert-file": str(certs.ca)}  # fmt: skip
    options.update({flag: named.get(value, value) if value else None for flag, value in change.items()})
    args = [word for flag, value in options.items() if value is not None for word in (flag, value)]
    done = _launch("--redis-url", backing.url, "--port", str(free_port()), *args, timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert errors and said in errors[-1], done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_yaml_spells_tls_auth_clients_as_redis_does(tmp_path: Path) -> None:
    config = tmp_path / "invoke.yaml"
    for spelled, meant in (("yes", "yes"), ("no", "no"), ("optional", "optional")):
        config.write_text(f"gearcam:\n  runtime:\n    tls_auth_clients: {spelled}\n")
        assert load_settings(config, environ={}).runtime.tls_auth_clients == meant
