"""``python -m gearcam.web``: serve one stream's page (env ``STREAM``, ``PORT``, ``REDIS_URL``; flags win)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

import uvicorn

from gearcam.config import load_settings, redact_url
from gearcam.errors import GearcamError
from gearcam.logs import add_log_level, setup_logging
from gearcam.web.app import create_app
from gearcam.web.auth import check_exposure

logger = logging.getLogger("gearcam.web")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gearcam.web", description=__doc__)
    parser.add_argument("--stream", help="stream to show (default: STREAM or the configuration: all)")
    parser.add_argument("--port", type=int, help="HTTP port (default: PORT or the configuration: 3000)")
    parser.add_argument("--host", help="address to listen on (default: 127.0.0.1; others need web.token)")
    parser.add_argument("--url", help="Redis (default: REDIS_URL or the configuration)")
    add_log_level(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    web = {k: v for k, v in (("stream", args.stream), ("port", args.port), ("host", args.host)) if v is not None}
    overrides: dict[str, Any] = {"web": web}
    if args.url:
        overrides["redis_url"] = args.url
    try:
        settings = load_settings(**overrides)
        token = settings.web.token.get_secret_value() if settings.web.token else None
        check_exposure(settings.web.host, token, settings.web.anonymous)
    except GearcamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = create_app(settings.web, settings.redis_url, settings.record.data_dir)
    logger.info("page for %s on http://%s:%d/ (Redis %s)", settings.web.stream, settings.web.host, settings.web.port,
                redact_url(settings.redis_url))  # fmt: skip
    uvicorn.run(app, host=settings.web.host, port=settings.web.port, log_level="warning",
                timeout_graceful_shutdown=3, ws_max_size=1 << 20)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
