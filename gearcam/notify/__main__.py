"""``python -m gearcam.notify``: send the events of the stream ``events`` to MQTT and webhooks until stopped.

Defaults come from the ``events`` section of gearcam/config.py (and invoke.yaml, and
``GEARCAM_EVENTS__<KEY>``, e.g. ``GEARCAM_EVENTS__MQTT_URL=mqtt://host:1883``); the flags below override them.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import threading
from collections.abc import Sequence
from typing import Any

import redis

from gearcam.client_names import named
from gearcam.config import Settings, load_settings, redact_url
from gearcam.errors import GearcamError, exit_with
from gearcam.events import EventConsumer
from gearcam.logs import add_log_level, setup_logging
from gearcam.notify.mqtt import MqttLink
from gearcam.notify.service import Notifier, NotifierOptions
from gearcam.notify.webhook import WebhookOptions
from gearcam.signals import stop_on_signals

logger = logging.getLogger("gearcam.notify")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gearcam.notify", description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", help="Redis to read events from (default: REDIS_URL or the configuration)")
    parser.add_argument(
        "--mqtt-url",
        help="MQTT broker, mqtt://host:port (default: events.mqtt_url, else mqtt://127.0.0.1:<events.broker_port>)",
    )
    parser.add_argument("--webhook", action="append", help="URL to POST each event to (repeatable; adds to the config)")
    parser.add_argument("--consumer", help="consumer name in the group (default: the host name)")
    add_log_level(parser)
    return parser.parse_args(argv)


def build(settings: Settings, consumer_name: str, stop: threading.Event) -> Notifier:
    events = settings.events
    client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=max(events.timeout, 5.0) + 5.0, redis_connect_func=named("gearcam-notify")
    )
    options = NotifierOptions(
        topic_prefix=events.topic_prefix, discovery_prefix=events.discovery_prefix, webhooks=tuple(events.webhooks),
        webhook=WebhookOptions(retries=events.retries, backoff=events.backoff, timeout=events.timeout,
                               secret=events.hmac_secret.get_secret_value() if events.hmac_secret else None,
                               dead_letter_stream=events.dead_letter_stream),
    )  # fmt: skip
    consumer = EventConsumer(client, events.stream, events.group, consumer_name)
    mqtt = MqttLink(events.broker_url, options.availability, f"gearcam-notify-{consumer_name}", events.timeout)
    return Notifier(client, consumer, mqtt, options, stop)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    overrides: dict[str, Any] = {}
    if args.redis_url:
        overrides["redis_url"] = args.redis_url
    if args.mqtt_url:
        overrides["events"] = {"mqtt_url": args.mqtt_url}
    stop = stop_on_signals(logger)
    try:
        settings = load_settings(**overrides)
        if args.webhook:
            settings.events.webhooks = [*settings.events.webhooks, *args.webhook]
        notifier = build(settings, args.consumer or socket.gethostname(), stop)
        logger.info("reading %s (group %s) from %s", settings.events.stream, settings.events.group,
                    redact_url(settings.redis_url))  # fmt: skip
        notifier.mqtt.start()
        try:
            counts = notifier.run()
        finally:
            notifier.mqtt.stop()
    except GearcamError as exc:
        return exit_with(exc)
    except redis.RedisError as exc:
        print(f"error: Redis: {exc}; is it running (REDIS_URL, --redis-url)?", file=sys.stderr)
        return 1
    logger.info("stopped: %d event(s) sent, %d dead-lettered", counts.handled, counts.dead_letters)
    return 0


if __name__ == "__main__":
    sys.exit(main())
