"""A backing Redis reached over TLS (rediss://): every link of the runtime, and its Gears workers', is TLS."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import free_port, wait_for
from tests.runtime.conftest import ROOT, Backing, Runtime, wait_ready
from tests.runtime.tls_files import KEY_PASSPHRASE, Certificates, make_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("backing-tls"))


@pytest.fixture(scope="module")
def tls_redis(certs: Certificates, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A redis-server serving TLS only (port 0), wanting client certificates its CA signed (Redis' default)."""
    port = free_port()
    command = ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(tmp_path_factory.mktemp("backing-tls-data")),
               "--tls-cert-file", str(certs.server_cert), "--tls-key-file", str(certs.server_key),
               "--tls-ca-cert-file", str(certs.ca)]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, ssl=True, ssl_ca_certs=str(certs.ca), ssl_certfile=str(certs.client_cert),
                         ssl_keyfile=str(certs.client_key), socket_timeout=5)  # fmt: skip
    try:
        wait_ready(port, proc=proc, client=client)
        yield port
    finally:
        proc.terminate()
        proc.wait(20)


def _trusting(certs: Certificates, *extra: str) -> list[str]:
    return ["--tls-ca-cert-file", str(certs.ca), *extra]


@pytest.fixture(scope="module")
def fronting(tls_redis: int, certs: Certificates) -> Iterator[Runtime]:
    runtime = Runtime(free_port(), f"rediss://127.0.0.1:{tls_redis}", args=_trusting(
        certs, "--tls-client-cert-file", str(certs.client_cert), "--tls-client-key-file", str(certs.client_key)))  # fmt: skip
    runtime.start()
    yield runtime
    runtime.stop()


def test_the_runtime_fronts_a_redis_it_reaches_over_tls(fronting: Runtime) -> None:
    client = redis.Redis(port=fronting.port, protocol=2, socket_timeout=60)
    big = bytes(range(256)) * (8 * 4096)  # 8 MiB, relayed both ways
    assert client.set("btls:big", big)
    assert client.get("btls:big") == big
    assert client.execute_command("AI.TENSORSET", "btls:t", "FLOAT", 2, "VALUES", 1, 2) == b"OK"
    assert client.execute_command("AI.TENSORGET", "btls:t", "VALUES") == [b"1", b"2"]
    assert client.type("btls:t") == b"AI_TENSOR"
    # Gears code runs in a worker process, whose links are TLS too (its files read before it gives up the user).
    assert client.execute_command(
        "RG.PYEXECUTE", "GB().map(lambda r: execute('STRLEN', r['key'])).run('btls:big')"
    ) == [
        [b"8388608"],
        [],
    ]
    code = "GB('StreamReader').foreach(lambda r: execute('INCR', 'btls:seen')).register('btls:s:*')"
    assert client.execute_command("RG.PYEXECUTE", code) == b"OK"
    client.xadd("btls:s:1", {"frame": b"x"})
    wait_for(lambda: client.get("btls:seen") == b"1", "the StreamReader to see the entry")
    listed = [line for line in client.client_list() if line["cmd"] == "client|list"]
    assert listed and listed[0]["laddr"] == f"127.0.0.1:{fronting.port}"
    assert "Traceback" not in fronting.output()


def test_the_servers_certificate_and_key_stand_in_with_a_passphrase(tls_redis: int, certs: Certificates) -> None:
    """Without tls_client_*, the runtime shows tls_cert_file, as a Redis replica shows its own to its master."""
    runtime = Runtime(free_port(), f"rediss://localhost:{tls_redis}", args=_trusting(
        certs, "--tls-cert-file", str(certs.server_cert), "--tls-key-file", str(certs.encrypted_key),
        "--tls-key-file-pass", KEY_PASSPHRASE))  # fmt: skip
    runtime.start()
    try:
        client = redis.Redis(port=runtime.port, protocol=2, socket_timeout=60)
        assert client.execute_command("RG.PYEXECUTE", "GB('ShardsIDReader').map(lambda r: execute('PING')).run()") == [
            [b"PONG"],
            [],
        ]
    finally:
        runtime.stop()


def _launch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gearcam.runtime", "--port", str(free_port()), "--start-wait", "0", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})  # fmt: skip


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ([], "is not the server its certificate vouches for: self-signed certificate in certificate chain; set "
         "runtime.tls_ca_cert_file (--tls-ca-cert-file)"),
        (["CA"], "tlsv13 alert certificate required (_ssl.c:2580); it wants a client certificate its CA signed: set "
         "runtime.tls_client_cert_file"),
        (["CA", "--tls-client-cert-file", "STRANGER", "--tls-client-key-file", "STRANGER_KEY"],
         "alert unknown ca (_ssl.c:2580); it does not trust the runtime's certificate"),
        (["CA", "--tls-client-cert-file", "CLIENT"], "a client certificate needs both files: set --tls-client-key-file"),
        (["CA", "--tls-client-cert-file", "CLIENT", "--tls-client-key-file", "missing.key"],
         "cannot read tls_client_key_file"),
        (["CA", "--tls-cert-file", "SERVER", "--tls-key-file", "ENCRYPTED"],
         "an encrypted key needs --tls-key-file-pass"),
    ],
)  # fmt: skip
def test_what_a_tls_backing_refuses_stops_the_runtime_with_the_fix(
    tls_redis: int, certs: Certificates, options: list[str], said: str
) -> None:
    """At once (the backing Redis answered: waiting will not change its mind), exit code 1, no traceback."""
    named = {"CA": ["--tls-ca-cert-file", str(certs.ca)], "STRANGER": [str(certs.stranger_cert)],
             "STRANGER_KEY": [str(certs.stranger_key)], "CLIENT": [str(certs.client_cert)],
             "SERVER": [str(certs.server_cert)], "ENCRYPTED": [str(certs.encrypted_key)]}  # fmt: skip
    args = [word for option in options for word in named.get(option, [option])]
    done = _launch("--redis-url", f"rediss://127.0.0.1:{tls_redis}", *args)
    assert done.returncode == 1, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert errors and said in errors[-1], done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_rediss_to_a_plain_port_says_to_use_the_tls_port(backing: Backing) -> None:
    done = _launch("--redis-url", f"rediss://127.0.0.1:{backing.port}", env={"GEARCAM_RUNTIME__CONNECT_TIMEOUT": "1"})
    assert done.returncode == 1
    assert "no answer within 1 s; is that its tls-port? (a plain port never answers a TLS client" in done.stderr
    assert "Traceback" not in done.stderr


def test_config_set_renews_the_files_of_new_links_the_runtimes_and_its_workers(
    certs: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A rotation as cert-manager makes one: the backing Redis comes to trust another CA, the runtime's client
    certificate is renewed in place (same paths), and `CONFIG SET` of those paths makes new links, the runtime's
    and its Gears worker's, show the new one, as Redis renews its outgoing links' context. Before, only a restart
    did: the runtime answered that it reads them at start."""
    folder = tmp_path_factory.mktemp("renewed-links")
    cert, key = folder / "client.crt", folder / "client.key"
    shutil.copy(certs.client_cert, cert)
    shutil.copy(certs.client_key, key)
    port = free_port()
    command = ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(folder), "--tls-cert-file", str(certs.server_cert),
               "--tls-key-file", str(certs.server_key), "--tls-ca-cert-file", str(certs.ca)]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    admin = redis.Redis(port=port, ssl=True, ssl_ca_certs=str(certs.ca), ssl_certfile=str(certs.client_cert),
                        ssl_keyfile=str(certs.client_key), socket_timeout=5)  # fmt: skip
    runtime = Runtime(free_port(), f"rediss://127.0.0.1:{port}", args=_trusting(
        certs, "--tls-client-cert-file", str(cert), "--tls-client-key-file", str(key)))  # fmt: skip
    try:
        wait_ready(port, proc=proc, client=admin)
        runtime.start()
        client = redis.Redis(port=runtime.port, protocol=2, socket_timeout=60, retry=None)
        ping = "GB('ShardsIDReader').map(lambda x: execute('SET', 'renewed:gears', '{}')).run()"
        assert client.execute_command("RG.PYEXECUTE", ping.format(1)) == [[b"OK"], []]  # its worker is up
        # The backing Redis trusts only the other CA's client certificates from now on.
        admin.config_set("tls-ca-cert-file", str(certs.stranger_cert.parent / "other-ca.crt"))
        with pytest.raises(redis.RedisError):  # a new client's link shows the old certificate: refused
            redis.Redis(port=runtime.port, protocol=2, socket_timeout=30, retry=None).set("renewed:k", "v")
        assert "tls-client-cert-file" in str(_config_error(client, "/nonexistent.crt", str(key)))
        shutil.copy(certs.stranger_cert, cert)
        shutil.copy(certs.stranger_key, key)
        assert client.execute_command("CONFIG", "SET", "tls-client-cert-file", str(cert), "tls-client-key-file",
                                      str(key)) == b"OK"  # fmt: skip
        fresh = redis.Redis(port=runtime.port, protocol=2, socket_timeout=30, retry=None)
        assert fresh.set("renewed:k", "v") is True
        assert fresh.execute_command("AI.TENSORSET", "renewed:t", "FLOAT", 1, "VALUES", 3) == b"OK"
        # Every link drops (the worker's among them) and comes back with the renewed certificate.
        admin.client_kill_filter(_type="normal", skipme=True)
        wait_for(lambda: _answers(fresh_client(runtime), ping.format(2)), "the worker's new link")
        assert admin.get("renewed:gears") == b"2"
        assert fresh_client(runtime).execute_command("AI.TENSORGET", "renewed:t", "VALUES") == [b"3"]
        # Files at other paths; the old ones stale again. A worker started from now on reads the new ones.
        shutil.copy(certs.client_cert, cert)
        shutil.copy(certs.client_key, key)
        shutil.copy(certs.stranger_cert, folder / "next.crt")
        shutil.copy(certs.stranger_key, folder / "next.key")
        assert client.execute_command("CONFIG", "SET", "tls-client-cert-file", str(folder / "next.crt"),
                                      "tls-client-key-file", str(folder / "next.key")) == b"OK"  # fmt: skip
        (worker,) = runtime.gears_workers()
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: worker not in runtime.gears_workers(), "the worker to go")
        wait_for(lambda: _answers(fresh_client(runtime), ping.format(3)), "a new worker's link")
        assert admin.get("renewed:gears") == b"3" and runtime.gears_workers() != [worker]
        assert "Traceback" not in runtime.output()
    finally:
        runtime.stop()
        proc.terminate()
        proc.wait(20)


def fresh_client(runtime: Runtime) -> redis.Redis:
    return redis.Redis(port=runtime.port, protocol=2, socket_timeout=30, retry=None)


def _answers(client: redis.Redis, code: str) -> bool:
    try:
        return bool(client.execute_command("RG.PYEXECUTE", code) == [[b"OK"], []])
    except redis.RedisError:
        return False
    finally:
        client.close()


def _config_error(client: redis.Redis, cert: str, key: str) -> redis.ResponseError:
    with pytest.raises(redis.ResponseError) as caught:
        client.execute_command("CONFIG", "SET", "tls-client-cert-file", cert, "tls-client-key-file", key)
    assert "Unable to update TLS configuration" in str(caught.value)
    return caught.value
