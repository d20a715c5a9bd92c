"""``python -m gearcam.loader``: put everything the pipeline needs into Redis, idempotently.

The k8s Job and ``invoke up`` run it. In order:

1. wait until Redis (the gearcam runtime, or a Redis with the modules) answers PING;
2. store the classifier from ``models/manifest.yaml`` with AI.MODELSTORE (gearcam.models.upload),
   unless the key already holds the same artifact (same TAG);
3. write the class names to ``gearcam:labels``, and to ``gearcam:config`` the fields it lacks: a value an
   operator set there (``HSET gearcam:config sample_every 5``) survives a restart; ``--reset-config``
   writes every configured value (the model's own fields, input and output names, always follow the model);
4. upload ``gears/animal_recognition.py`` with ``RG.PYEXECUTE … ID … UPGRADE REQUIREMENTS …`` so a
   second run swaps the registration for the new code instead of adding one;
5. check with RG.DUMPREGISTRATIONS that exactly one registration belongs to that ID.

It speaks only documented RedisAI/RedisGears 1.2 commands, so it works the same against the
runtime and against the real modules.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gearcam.client_names import named
from gearcam.config import (
    CONFIG_KEY,
    LABELS_KEY,
    PROJECT_ROOT,
    PipelineSettings,
    Settings,
    load_settings,
    redact_url,
)
from gearcam.errors import GearcamError, NetworkError, OperatorError, exit_with, module_missing
from gearcam.logs import setup_logging
from gearcam.models.manifest import Artifact, load_manifest, read_labels, verify_artifact
from gearcam.models.upload import StoreOptions, server_chunk_size, store_model
from gearcam.redis_text import text as _text

__all__ = [
    "GEARS_REQUIREMENTS",
    "GEARS_SCRIPT",
    "ConfigWrite",
    "LoadReport",
    "config_fields",
    "load",
    "main",
    "pyexecute_args",
    "read_requirements",
    "registrations_of",
    "wait_for_redis",
]

logger = logging.getLogger(__name__)

GEARS_SCRIPT = PROJECT_ROOT / "gears" / "animal_recognition.py"
GEARS_REQUIREMENTS = PROJECT_ROOT / "gears" / "requirements.txt"
_SESSION = re.compile(r"""['"]?sessionId['"]?\s*:\s*['"]([^'"]*)['"]""")


# Fields that describe the stored model: rewritten on every load, so they always match it.
MODEL_FIELDS = ("model_key", "model_input", "model_output", "labels_key")


@dataclass(frozen=True)
class ConfigWrite:
    """What the load did to the config hash: fields added, fields kept as an operator set them."""

    added: tuple[str, ...] = ()
    kept: dict[str, str] | None = None

    def summary(self) -> str:
        kept = self.kept or {}
        text = f"{len(self.added)} field(s) added"
        if kept:
            values = ", ".join(f"{k}={v}" for k, v in sorted(kept.items()))
            text += f", kept {values} as set there (`invoke up --reset-config` writes the configured values)"
        return text


@dataclass(frozen=True)
class LoadReport:
    """What a load did, for the log and the tests."""

    model_stored: bool
    model_tag: str
    registration_id: str
    config: ConfigWrite = ConfigWrite()


def wait_for_redis(client: redis.Redis, url: str, timeout: float) -> None:
    """PING until Redis answers or ``timeout`` seconds passed (backoff 0.1 s doubling to 2 s)."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        try:
            client.ping()
            return
        except (RedisConnectionError, RedisTimeoutError) as exc:
            if time.monotonic() + delay > deadline:
                raise NetworkError(
                    f"Redis at {redact_url(url)} did not answer within {timeout:g}s ({exc}); "
                    "start it (`invoke up`) or pass --url"
                ) from exc
            logger.info("waiting for Redis at %s (%s)", redact_url(url), exc)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def read_requirements(path: Path = GEARS_REQUIREMENTS) -> list[str]:
    """The requirement lines of gears/requirements.txt, comments and blanks left out."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise OperatorError(f"cannot read {path} ({exc}); restore it with `git checkout -- gears/`") from exc
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def pyexecute_args(code: str, session_id: str, requirements: Sequence[str]) -> list[str]:
    """RG.PYEXECUTE with ID and UPGRADE: the first run creates the session, later runs replace its code."""
    args = ["RG.PYEXECUTE", code, "ID", session_id, "UPGRADE"]
    if requirements:
        args += ["REQUIREMENTS", *requirements]
    return args


def config_fields(pipeline: PipelineSettings, model_key: str, artifact: Artifact) -> dict[str, str]:
    """The config hash (ARCHITECTURE.md §2 plus the fields docs/pipeline.md adds)."""
    return {
        "sample_every": str(pipeline.sample_every),
        "threshold": repr(pipeline.threshold),
        "target_classes": pipeline.target_classes.replace(" ", ""),
        "model_key": model_key,
        "model_input": artifact.input_names[0],
        "model_output": artifact.output_names[0],
        "labels_key": LABELS_KEY,
        "hits_stream": pipeline.hits_stream,
        "stream_maxlen": str(pipeline.stream_maxlen),
        "max_frame_bytes": str(pipeline.max_frame_bytes),
    }


def _command(client: redis.Redis, *args: Any) -> Any:
    """One command with its raw reply (redis-py has no reply callbacks for the module commands)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _as_dict(flat: Any) -> dict[str, Any]:
    if isinstance(flat, dict):
        return {_text(k): v for k, v in flat.items()}
    items = list(flat or [])
    return {_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def registrations_of(reply: Any, session_id: str) -> list[str]:
    """Ids of the RG.DUMPREGISTRATIONS entries whose private data names ``session_id``."""
    found = []
    for entry in reply or []:
        fields = _as_dict(entry)
        match = _SESSION.search(_text(fields.get("PD", "")))
        if match is not None and match.group(1) == session_id:
            found.append(_text(fields.get("id", "?")))
    return found


def _stored_tag(client: redis.Redis, key: str) -> str | None:
    try:
        meta = _as_dict(_command(client, "AI.MODELGET", key, "META"))
    except ResponseError:
        return None  # no model there (or not a model): store it
    tag = meta.get("tag")
    return _text(tag) if tag is not None else None


def _store_model(client: redis.Redis, settings: Settings, artifact: Artifact, force: bool) -> tuple[bool, str]:
    options = StoreOptions.from_settings(settings.models, artifact)
    tag = options.tag or ""
    if not force and tag and _stored_tag(client, options.key) == tag:
        logger.info("%s already holds %s (tag %s); not storing it again", options.key, artifact.name, tag)
        return False, tag
    blob = verify_artifact(artifact)
    store_model(client, artifact, blob, options, server_chunk_size(client, settings.runtime.model_chunk_size))
    return True, tag


def _write_labels_and_config(
    client: redis.Redis, settings: Settings, artifact: Artifact, overwrite: Sequence[str] = ()
) -> ConfigWrite:
    """Labels, then the config fields the hash lacks (and the model's, and those in ``overwrite``)."""
    labels = read_labels(load_manifest())
    fields = config_fields(settings.pipeline, settings.models.key, artifact)
    present = {_text(k): _text(v) for k, v in cast("dict[Any, Any]", client.hgetall(CONFIG_KEY)).items()}
    always = {*MODEL_FIELDS, *overwrite}
    write = {k: v for k, v in fields.items() if k in always or k not in present}
    kept = {k: present[k] for k in fields if k not in write and present[k] != fields[k]}
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(LABELS_KEY)
        pipe.rpush(LABELS_KEY, *labels)
        pipe.hset(CONFIG_KEY, mapping=cast("dict[Any, Any]", write))
        pipe.execute()
    added = tuple(k for k in write if k not in present)
    logger.info("wrote %d labels to %s; %s: wrote %s", len(labels), LABELS_KEY, CONFIG_KEY, write)
    for name, value in sorted(kept.items()):
        logger.info("%s: kept %s=%s as set there (the configuration says %s; --reset-config writes it)",
                    CONFIG_KEY, name, value, fields[name])  # fmt: skip
    return ConfigWrite(added, kept)


def _upload_gears(client: redis.Redis, session_id: str, script: Path, requirements: Path) -> str:
    try:
        code = script.read_text()
    except OSError as exc:
        raise OperatorError(f"cannot read the Gears script {script} ({exc})") from exc
    args = pyexecute_args(code, session_id, read_requirements(requirements))
    try:
        _command(client, *args)
        reply = _command(client, "RG.DUMPREGISTRATIONS")
    except ResponseError as exc:
        if "unknown command" in str(exc).lower():
            raise module_missing("RG.*", "redisgears.so") from exc
        raise OperatorError(f"RG.PYEXECUTE of {script.name} (ID {session_id}) was refused: {exc}") from exc
    ids = registrations_of(reply, session_id)
    if len(ids) != 1:
        raise OperatorError(
            f"RG.DUMPREGISTRATIONS shows {len(ids)} registrations of session {session_id} ({', '.join(ids) or 'none'})"
            f", expected exactly 1; remove the extra ones with RG.UNREGISTER <id> and run the loader again"
        )
    logger.info("Gears script %s uploaded as session %s, registration %s", script.name, session_id, ids[0])
    return ids[0]


def load(
    client: redis.Redis,
    settings: Settings,
    *,
    force_model: bool = False,
    script: Path = GEARS_SCRIPT,
    requirements: Path = GEARS_REQUIREMENTS,
    overwrite_config: Sequence[str] | bool = (),
) -> LoadReport:
    """Model, labels, config hash and Gears script, in that order (the script reads the others).

    ``overwrite_config``: config fields to write even when the hash has them (True: all of them).
    """
    artifact = load_manifest().get(settings.models.name)
    stored, tag = _store_model(client, settings, artifact, force_model)
    overwrite = list(PipelineSettings.model_fields) if overwrite_config is True else overwrite_config or ()
    config = _write_labels_and_config(client, settings, artifact, [*overwrite])
    registration = _upload_gears(client, settings.pipeline.gears_id, script, requirements)
    return LoadReport(stored, tag, registration, config)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gearcam.loader", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="Redis to load (default: REDIS_URL or the configuration)")
    parser.add_argument("--model", metavar="NAME", help="manifest entry to store (default: models.name)")
    parser.add_argument("--force-model", action="store_true", help="store the model even if the same tag is there")
    parser.add_argument("--sample-every", type=int, help="pipeline.sample_every for the config hash")
    parser.add_argument("--threshold", type=float, help="pipeline.threshold for the config hash")
    parser.add_argument(
        "--reset-config", action="store_true", help=f"overwrite {CONFIG_KEY} with the configured values"
    )
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for Redis (default 60)")
    parser.add_argument("--script", type=Path, default=GEARS_SCRIPT, help=f"Gears script (default {GEARS_SCRIPT})")
    parser.add_argument("--requirements", type=Path, default=GEARS_REQUIREMENTS,
                        help=f"its requirements (default {GEARS_REQUIREMENTS})")  # fmt: skip
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging("DEBUG" if args.verbose else "INFO")
    overrides: dict[str, Any] = {}
    if args.url:
        overrides["redis_url"] = args.url
    if args.model:
        overrides["models"] = {"name": args.model}
    pipeline = {k: v for k, v in (("sample_every", args.sample_every), ("threshold", args.threshold)) if v is not None}
    if pipeline:
        overrides["pipeline"] = pipeline
    try:
        settings = load_settings(**overrides)
        url = settings.redis_url
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=settings.runtime.connect_timeout,
            socket_timeout=settings.models.store_timeout,
            redis_connect_func=named("gearcam-loader"),
        )
        try:
            wait_for_redis(client, url, args.wait)
            overwrite: list[str] | bool = True if args.reset_config else list(pipeline)  # flags given here win
            report = load(client, settings, force_model=args.force_model, script=args.script,
                          requirements=args.requirements, overwrite_config=overwrite)  # fmt: skip
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise NetworkError(f"lost Redis at {redact_url(url)} while loading ({exc}); run the loader again") from exc
        finally:
            client.close()
    except GearcamError as exc:
        return exit_with(exc)
    what = "stored" if report.model_stored else "already there"
    print(f"loaded {redact_url(url)}: model {settings.models.key} ({report.model_tag}, {what}), "
          f"config {CONFIG_KEY} ({report.config.summary()}), Gears registration {report.registration_id}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
