"""The HTTP baseline: a plain inference server on the same engine, as many users would write one.

Starlette on uvicorn (the web pages' stack, pinned in requirements.txt), one route:
``POST /infer`` with the raw float32 tensor as the body and its batch size in the
``x-batch`` header; the reply is the raw float32 output. The engine is the runtime's own
engine module, so the only difference from AI.MODELEXECUTE is the server around it.
Runs in its own process: ``python -m gearcam.bench.http_server --backend ONNX --model FILE ...``.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gearcam.bench.measure import Call
from gearcam.runtime.ai.engines import EngineModel, EngineOptions, load_model

__all__ = ["build_app", "http_call", "main"]

logger = logging.getLogger(__name__)


def build_app(model: EngineModel, item: tuple[int, ...]) -> Starlette:
    """The app around an already loaded model; ``item`` is one input's shape without the batch."""
    item_bytes = math.prod(item) * 4

    async def infer(request: Request) -> Response:
        try:
            batch = int(request.headers.get("x-batch", "1"))
        except ValueError:
            return PlainTextResponse("x-batch must be an integer batch size", status_code=400)
        body = await request.body()
        if batch < 1 or len(body) != batch * item_bytes:
            return PlainTextResponse(
                f"body has {len(body)} bytes; a batch of {batch} needs {batch * item_bytes} (float32 {list(item)})",
                status_code=400,
            )
        x = np.frombuffer(body, dtype=np.float32).reshape(batch, *item)
        outputs = await run_in_threadpool(model.run, [x])
        return Response(np.ascontiguousarray(outputs[0], dtype=np.float32).tobytes(),
                        media_type="application/octet-stream")  # fmt: skip

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/infer", infer, methods=["POST"]), Route("/healthz", healthz)])


def http_call(conn: http.client.HTTPConnection, payload: bytes, batch: int) -> Call:
    """One client on a keep-alive connection, posting ``payload`` per call."""
    headers = {"x-batch": str(batch), "content-type": "application/octet-stream"}

    def run() -> None:
        conn.request("POST", "/infer", body=payload, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP baseline answered {response.status}: {data[:200]!r}")

    return run


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gearcam.bench.http_server", description=__doc__.split("\n")[0])
    parser.add_argument("--backend", required=True, choices=("ONNX", "TFLITE", "TF", "TORCH"))
    parser.add_argument("--model", type=Path, required=True, help="model file")
    parser.add_argument("--inputs", nargs="+", required=True, help="input tensor names")
    parser.add_argument("--outputs", nargs="+", required=True, help="output tensor names")
    parser.add_argument("--item", required=True, help="one input's shape without the batch, e.g. 224,224,3")
    parser.add_argument("--device", default="CPU", help="RedisAI device string: CPU or GPU[:n]")
    parser.add_argument("--port", type=int, required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import uvicorn

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    item = tuple(int(n) for n in args.item.split(","))
    model = load_model(args.backend, args.device, args.model.read_bytes(), args.inputs, args.outputs, EngineOptions())
    # Loaded before the port opens, so "accepts connections" means "ready to infer".
    uvicorn.run(build_app(model, item), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
