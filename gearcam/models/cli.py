"""Task bodies for ``invoke models`` and ``invoke upload``, and ``python -m gearcam.models``.

``models_task`` and ``upload_task`` are plain functions: tasks.py calls them and turns
a ``GearcamError`` into ``Exit(message)``; ``main`` does the same for the command line.

    python -m gearcam.models                    rebuild every artifact (needs requirements-export.txt)
    python -m gearcam.models --only lite0-onnx  rebuild one
    python -m gearcam.models --check            verify the committed artifacts
    python -m gearcam.models upload [--model NAME] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gearcam.client_names import named
from gearcam.config import load_settings, redact_url
from gearcam.errors import GearcamError, NetworkError, OperatorError
from gearcam.models.check import Finding, check_manifest, verdict
from gearcam.models.export import export, reexport_findings
from gearcam.models.manifest import load_manifest, verify_artifact
from gearcam.models.upload import StoreOptions, modelstore_args, server_chunk_size, store_model

__all__ = ["main", "models_task", "upload_task"]

logger = logging.getLogger(__name__)


def _report(findings: list[Finding]) -> None:
    width = max((len(f.artifact) for f in findings), default=0)
    for f in findings:
        print(f"{f.status.upper():4}  {f.artifact:<{width}}  {f.check}: {f.detail}")


def models_task(check: bool = False, only: str | None = None) -> None:
    """Rebuild the artifacts in models/ (all, or ``only``), or with ``check`` verify the committed ones.

    The check covers sha256, classification through each installed engine, fp32 agreement,
    the recorded runtime requirements and, where the export tools are installed, a re-export.
    """
    if not check:
        manifest = export(only=only)
        for artifact in manifest.artifacts:
            print(
                f"{artifact.name:<18} {artifact.backend:<6} {artifact.precision}  {artifact.file}  "
                f"{artifact.size / 1e6:.1f} MB  {artifact.sha256[:12]}"
            )
        return
    manifest = load_manifest()
    findings = check_manifest(manifest, only=only)
    findings += reexport_findings(manifest, only=only)
    _report(findings)
    failed = [f for f in findings if f.status == "fail"]
    skipped = sum(f.status == "skip" for f in findings)
    print(f"{len(findings) - len(failed) - skipped} passed, {len(failed)} failed, {skipped} skipped")
    if not verdict(findings):
        first = failed[0]
        raise OperatorError(
            f"{len(failed)} model check(s) failed, first: {first.artifact} {first.check}: {first.detail}"
        )


def upload_task(model: str | None = None, redis_url: str | None = None) -> None:
    """Store the configured model (or ``model``) with AI.MODELSTORE; nothing is sent until the file checks out."""
    settings = load_settings()
    artifact = load_manifest().get(model or settings.models.name)
    blob = verify_artifact(artifact)
    options = StoreOptions.from_settings(settings.models, artifact)
    modelstore_args(artifact, blob, options, settings.runtime.model_chunk_size)  # option errors before connecting
    url = redis_url or settings.redis_url
    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=settings.runtime.connect_timeout,
        socket_timeout=settings.models.store_timeout,
        redis_connect_func=named("gearcam-models"),
    )
    try:
        chunk_size = server_chunk_size(client, settings.runtime.model_chunk_size)
        store_model(client, artifact, blob, options, chunk_size)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise NetworkError(
            f"cannot reach {redact_url(url)} ({exc}); start it with `invoke up` or set REDIS_URL"
        ) from exc
    finally:
        client.close()
    print(
        f"stored {artifact.name} ({artifact.backend}, {artifact.precision}) at {options.key} "
        f"on {redact_url(url)}, tag {options.tag}"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gearcam.models", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="verify the committed artifacts instead of rebuilding")
    parser.add_argument("--only", metavar="NAME", help="just this manifest entry")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    return parser


def _upload_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gearcam.models upload", description=upload_task.__doc__)
    parser.add_argument("--model", metavar="NAME", help="manifest entry (default: models.name in the configuration)")
    parser.add_argument("--redis-url", metavar="URL", help="default: REDIS_URL or the configuration")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    upload = bool(args_list) and args_list[0] == "upload"
    args = _upload_parser().parse_args(args_list[1:]) if upload else _parser().parse_args(args_list)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("gearcam").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        if upload:
            upload_task(args.model, args.redis_url)
        else:
            models_task(args.check, args.only)
    except GearcamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
