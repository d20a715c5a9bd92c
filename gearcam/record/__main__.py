"""``python -m gearcam.record --redis-url URL --data DIR``: event clips and snapshots, and their retention."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import redis

from gearcam.client_names import named
from gearcam.config import CONFIG_KEY, load_settings, redact_url
from gearcam.errors import GearcamError
from gearcam.logs import add_log_level, setup_logging
from gearcam.record.coverage import check_coverage, needed_seconds
from gearcam.record.encode import EncodeError
from gearcam.record.recorder import Recorder

logger = logging.getLogger("gearcam.record")

EVENT_GAP_DEFAULT_S = 10.0  # the Gears script's default event_gap_s (docs/pipeline.md)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gearcam.record", description=__doc__)
    parser.add_argument("--redis-url", help="Redis (default: REDIS_URL or the configuration)")
    parser.add_argument("--data", type=Path, help="data folder; clips go to DATA/clips (default: record.data_dir)")
    add_log_level(parser)
    return parser.parse_args(argv)


def _event_gap_s(client: redis.Redis) -> float:
    try:
        return float(cast(Any, client.hget(CONFIG_KEY, "event_gap_s")) or EVENT_GAP_DEFAULT_S)
    except ValueError:
        return EVENT_GAP_DEFAULT_S


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    overrides: dict[str, Any] = {}
    if args.redis_url:
        overrides["redis_url"] = args.redis_url
    if args.data:
        overrides["record"] = {"data_dir": str(args.data)}
    try:
        settings = load_settings(**overrides)
    except GearcamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    client = redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=5, socket_timeout=30, redis_connect_func=named("gearcam-record")
    )
    recorder = Recorder(client, settings.record)
    signal.signal(signal.SIGTERM, lambda *_: recorder.stopping.set())
    try:
        pre, post = recorder.roll()
        needed = needed_seconds(pre, post, _event_gap_s(client))
        verdicts = check_coverage(client, settings.camera.maxlen, settings.camera.fps, needed)
        short = [v.describe() for v in verdicts if not v.ok]
        recorder.stats.state(coverage_warning="; ".join(short))
        logger.info("recorder on %s, data in %s", redact_url(settings.redis_url), settings.record.data_dir)
        recorder.run()
    except KeyboardInterrupt:
        pass
    except redis.RedisError as exc:
        print(f"error: Redis at {redact_url(settings.redis_url)}: {exc}; is gearcam up (`invoke up`)?", file=sys.stderr)
        return 1
    except EncodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
