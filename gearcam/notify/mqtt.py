"""The link to the MQTT broker (paho-mqtt): last will, reconnection, and publishing that completes or raises.

paho's network loop runs in its own thread and reconnects on its own (0.2 s to 5 s apart). A
publish waits for the broker's acknowledgement (QoS 1) up to ``timeout`` and raises
``NetworkError`` otherwise, so the caller can keep the event and try again: a broker that is
down delays notifications, it never loses them. The availability topic says ``online`` while
connected; the broker publishes the will, ``offline``, when the link dies.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gearcam.config import redact_url
from gearcam.errors import ConfigError, NetworkError

__all__ = ["Broker", "MqttLink"]

logger = logging.getLogger(__name__)
ONLINE, OFFLINE = "online", "offline"


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> Broker:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ConfigError(f"events.mqtt_url={redact_url(url)!r}: expected mqtt://host:port or mqtts://host:port")
        tls = parts.scheme == "mqtts"
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        return cls(parts.hostname, parts.port or (8883 if tls else 1883), tls, user, password)


class MqttLink:
    """One paho client; ``on_connect`` is called (in paho's thread) after every (re)connection."""

    def __init__(self, url: str, availability: str, client_id: str, timeout: float = 5.0) -> None:
        self.url, self.availability, self.timeout = url, availability, timeout
        self.broker = Broker.from_url(url)
        self.on_connect: Callable[[], None] = lambda: None
        self.connected = threading.Event()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if self.broker.username is not None:
            client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            client.tls_set()
        client.will_set(availability, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        self.client = client

    def start(self) -> None:
        """Connect in the background (the broker may come later)."""
        logger.info("connecting to MQTT broker %s", redact_url(self.url))
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=15)
        self.client.loop_start()

    def stop(self) -> None:
        """Say offline on purpose, then disconnect (the will is for deaths, not for stops)."""
        if self.client.is_connected():
            info = self.client.publish(self.availability, OFFLINE, qos=1, retain=True)
            info.wait_for_publish(self.timeout)
        self.client.disconnect()
        self.client.loop_stop()

    def _connected(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            logger.warning("MQTT broker %s refused the connection: %s", redact_url(self.url), reason)
            return
        logger.info("connected to MQTT broker %s", redact_url(self.url))
        client.publish(self.availability, ONLINE, qos=1, retain=True)
        self.connected.set()
        try:
            self.on_connect()
        except Exception:  # in paho's thread: log it, the next publish will find out
            logger.exception("announcing to the MQTT broker failed")

    def _disconnected(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.connected.clear()
        logger.warning("MQTT broker %s went away (%s); reconnecting", redact_url(self.url), reason)

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        """Publish with QoS 1 and wait for the broker's acknowledgement; NetworkError when it does not come."""
        if not self.connected.is_set():
            raise NetworkError(f"MQTT broker {redact_url(self.url)} is not connected; is mosquitto running?")
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        try:
            info.wait_for_publish(self.timeout)
        except (RuntimeError, ValueError) as exc:
            raise NetworkError(f"publishing {topic} to {redact_url(self.url)} failed: {exc}") from exc
        if not info.is_published():
            raise NetworkError(f"MQTT broker {redact_url(self.url)} did not acknowledge {topic} in {self.timeout:g}s")
