"""The HTTP baseline server: real uvicorn process, real engine; answers inferences and refuses bad bodies."""

from __future__ import annotations

import contextlib
import http.client
import sys
from pathlib import Path

import numpy as np
import pytest

from gearcam.bench.http_server import http_call
from gearcam.bench.procs import free_port, served_process
from gearcam.bench.subjects import Subject, load_subject, random_batch

pytest.importorskip("onnx", reason="the tabular model is built with onnx (requirements-dev.txt)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> object:
    subject = load_subject("tabular")
    assert isinstance(subject, Subject)
    model = tmp_path_factory.mktemp("http") / "tabular.onnx"
    model.write_bytes(subject.blob)
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gearcam.bench.http_server",
        "--backend",
        "ONNX",
        "--model",
        str(model),
        "--inputs",
        *subject.inputs,
        "--outputs",
        *subject.outputs,
        "--item",
        "30",
        "--port",
        str(port),
    ]
    with served_process(command, port, "the HTTP baseline server", timeout=60) as child:
        yield subject, child.port


def _post(port: int, body: bytes, batch: str) -> tuple[int, bytes]:
    with contextlib.closing(http.client.HTTPConnection("127.0.0.1", port, timeout=30)) as conn:
        conn.request("POST", "/infer", body=body, headers={"x-batch": batch})
        response = conn.getresponse()
        return response.status, response.read()


def test_it_returns_the_engines_output_as_raw_float32(server: tuple[Subject, int]) -> None:
    subject, port = server
    x = random_batch(subject, 3)
    status, body = _post(port, x.tobytes(), "3")
    assert status == 200
    y = np.frombuffer(body, np.float32).reshape(3, 2)
    assert np.allclose(y.sum(axis=1), 1.0, atol=1e-5)


def test_a_body_of_the_wrong_size_is_refused_with_what_was_expected(server: tuple[Subject, int]) -> None:
    subject, port = server
    status, body = _post(port, random_batch(subject, 2).tobytes(), "3")
    assert status == 400
    assert b"body has 240 bytes; a batch of 3 needs 360" in body
    status, body = _post(port, b"", "three")
    assert status == 400 and b"x-batch must be an integer" in body
    assert _post(port, random_batch(subject, 1).tobytes(), "1")[0] == 200  # still serving


def test_the_benchmark_client_raises_on_an_error_status(server: tuple[Subject, int]) -> None:
    _, port = server
    with contextlib.closing(http.client.HTTPConnection("127.0.0.1", port, timeout=30)) as conn:
        call = http_call(conn, b"\x00" * 7, 1)
        with pytest.raises(RuntimeError, match="answered 400"):
            call()


def test_the_server_process_is_gone_after_the_context(tmp_path: Path) -> None:
    port = free_port()
    code = f"import socket,time; s=socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(60)"
    command = [sys.executable, "-c", code]
    with served_process(command, port, "a listener", timeout=30) as child:
        pid = child.pid
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
