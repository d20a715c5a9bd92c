"""The notifier's loop: read an event, publish it to MQTT, POST it to the webhooks, then acknowledge it.

Per event, in order: the Home Assistant announcements of its camera and label (once per run),
the snapshot (``new``/``update``: the best frame's JPEG from the hits stream, retained), the
state (``ON``, or ``OFF`` at ``end``; retained), the JSON on ``<prefix>/events``, then each
webhook. A publish that fails (broker down) keeps the event: it is tried again every
``retry_s`` until the broker takes it, and only then acknowledged. A notifier killed at any
point leaves the event pending in the consumer group, and the next start sends it again: at
least once, never lost.

Its counters (``Counts``) are also added to the hash ``gearcam:stats:notify`` as they change, so
``invoke status`` and the web pages' ``/metrics`` show them with the pipeline's and the recorder's;
Redis being away loses a count there, never an event.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from gearcam.config import STATS_NOTIFY_KEY
from gearcam.errors import NetworkError
from gearcam.events import EventConsumer
from gearcam.notify.counts import Counts
from gearcam.notify.discovery import announcements, target_pairs
from gearcam.notify.event import Event, Topics
from gearcam.notify.mqtt import MqttLink
from gearcam.notify.webhook import WebhookOptions, deliver

__all__ = ["Notifier", "NotifierOptions"]

logger = logging.getLogger(__name__)
_BLOCK_MS = 1000  # how long one read waits for new events


@dataclass(frozen=True)
class NotifierOptions:
    topic_prefix: str = "gearcam"
    discovery_prefix: str = "homeassistant"
    webhooks: tuple[str, ...] = ()
    webhook: WebhookOptions = field(default_factory=WebhookOptions)
    retry_s: float = 1.0

    @property
    def availability(self) -> str:
        return f"{self.topic_prefix}/availability"


class Notifier:
    def __init__(
        self, client: redis.Redis, consumer: EventConsumer, mqtt: MqttLink, options: NotifierOptions,
        stop: threading.Event,
    ) -> None:  # fmt: skip
        self.client, self.consumer, self.mqtt, self.options, self.stop = client, consumer, mqtt, options, stop
        self.counts = Counts()
        self._announced: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        mqtt.on_connect = self._announce_all

    def _announce_all(self) -> None:
        """After each connection: every known camera and target label (paho's thread; the broker keeps them)."""
        with self._lock:
            pairs = set(self._announced)
        try:
            pairs |= target_pairs(self.client)
        except redis.RedisError as exc:
            logger.warning("cannot list cameras and target labels for Home Assistant: %s", exc)
        for camera, label in sorted(pairs):
            for topic, payload in announcements(Topics(self.options.topic_prefix, camera, label),
                                                self.options.discovery_prefix, self.options.availability):  # fmt: skip
                self.mqtt.client.publish(topic, payload, qos=1, retain=True)
        with self._lock:
            self._announced |= pairs

    def handle(self, event: Event) -> None:
        """Publish one event everywhere; NetworkError leaves it for another try."""
        topics = Topics(self.options.topic_prefix, event.camera, event.label)
        pair = (event.camera, event.label)
        with self._lock:
            known = pair in self._announced
        if not known:
            for topic, payload in announcements(topics, self.options.discovery_prefix, self.options.availability):
                self.mqtt.publish(topic, payload, retain=True)
            with self._lock:
                self._announced.add(pair)
        if event.active and event.snapshot:
            jpeg = self._snapshot(event)
            if jpeg is not None:
                self.mqtt.publish(topics.snapshot, jpeg, retain=True)
        self.mqtt.publish(topics.state, "ON" if event.active else "OFF", retain=True)
        body = json.dumps(event.as_json(), sort_keys=True)
        self.mqtt.publish(f"{self.options.topic_prefix}/events", body)
        for url in self.options.webhooks:
            if not deliver(self.client, url, body.encode(), self.options.webhook, self.stop):
                self._count("dead_letters")

    def _count(self, name: str) -> None:
        setattr(self.counts, name, getattr(self.counts, name) + 1)
        try:
            self.client.hincrby(STATS_NOTIFY_KEY, name, 1)
        except redis.RedisError as exc:  # the count in Redis is lost; the event is not
            logger.debug("cannot count %s in %s: %s", name, STATS_NOTIFY_KEY, exc)

    def _snapshot(self, event: Event) -> bytes | None:
        entries = cast(Any, self.client.xrange(event.stream, event.snapshot, event.snapshot, count=1))
        if not entries:
            logger.info("event %s: snapshot %s is no longer in %s (trimmed)", event.id, event.snapshot, event.stream)
            return None
        img = entries[0][1].get(b"img")
        return bytes(img) if img else None

    def run(self) -> Counts:
        """Until ``stop``: read, handle, acknowledge; Redis or broker trouble waits and tries again."""
        self.consumer.ensure_group()
        while not self.stop.is_set():
            try:
                entries = self.consumer.read(_BLOCK_MS)
            except redis.ConnectionError as exc:
                logger.warning("reading %s failed: %s; retrying", self.consumer.stream, exc)
                self.consumer.restart_backlog()
                self.stop.wait(self.options.retry_s)
                continue
            for entry, fields in entries:
                if not self._settle(entry, fields or {}):  # trimmed while pending: skipped as malformed
                    return self.counts
        return self.counts

    def _settle(self, entry: str, fields: dict[Any, Any]) -> bool:
        """Handle one entry until it is done (True), or until stopped (False: it stays pending)."""
        try:
            event = Event.from_fields(entry, fields)
        except ValueError as exc:
            logger.error("skipping %s: %s", entry, exc)  # a malformed entry would block the stream for ever
            self._count("skipped")
            self.consumer.ack(entry)
            return True
        while not self.stop.is_set():
            try:
                self.handle(event)
                self.consumer.ack(entry)
                self._count("handled")
                logger.debug("event %s %s %s/%s sent", event.type, event.id, event.camera, event.label)
                return True
            except (NetworkError, redis.ConnectionError) as exc:
                self._count("failed_attempts")
                if self.counts.failed_attempts == 1 or self.counts.failed_attempts % 30 == 0:
                    logger.warning("event %s waits: %s", entry, exc)
                self.stop.wait(self.options.retry_s)
            except InterruptedError:
                break
        return False
