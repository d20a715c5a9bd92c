"""Webhooks: POST each event as JSON to every configured URL, with retries and a dead-letter stream.

An attempt that fails (no answer, or a status outside 2xx) is retried ``retries`` times, the waits
doubling from ``backoff`` seconds; after that the delivery goes to the dead-letter stream (url,
body, error, attempts) and the notifier moves on: a webhook that is down costs its own
notifications, never the others'. With a secret, ``X-Gearcam-Signature: sha256=<hex>`` is the
HMAC-SHA256 of the body (GitHub's scheme), so the receiver can check the sender.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass

import redis

__all__ = ["SIGNATURE_HEADER", "WebhookOptions", "deliver", "post", "signature"]

logger = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Gearcam-Signature"


@dataclass(frozen=True)
class WebhookOptions:
    retries: int = 5
    backoff: float = 0.5
    timeout: float = 5.0
    secret: str | None = None
    dead_letter_stream: str = "events:dead"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(url: str, body: bytes, options: WebhookOptions) -> None:
    """One POST; OSError (urllib's errors included) when it fails or answers outside 2xx."""
    headers = {"Content-Type": "application/json", "User-Agent": "gearcam-notify"}
    if options.secret:
        headers[SIGNATURE_HEADER] = signature(options.secret, body)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=options.timeout) as response:  # noqa: S310 (configured URLs)
        if not 200 <= response.status < 300:
            raise OSError(f"HTTP {response.status}")


def deliver(client: redis.Redis, url: str, body: bytes, options: WebhookOptions, stop: threading.Event) -> bool:
    """POST with retries; False (and an entry in the dead-letter stream) when every attempt failed.

    InterruptedError when ``stop`` is set while waiting: the caller leaves the event unacknowledged.
    """
    error = ""
    attempts = 0
    for attempt in range(options.retries + 1):
        if attempt and stop.wait(options.backoff * 2 ** (attempt - 1)):
            raise InterruptedError(f"stopped while retrying webhook {url}; the event stays pending")
        attempts += 1
        try:
            post(url, body, options)
            return True
        except (OSError, ValueError) as exc:  # HTTPError, URLError, timeouts, bad URLs
            error = f"{type(exc).__name__}: {exc}"
            logger.warning("webhook %s failed (attempt %d of %d): %s", url, attempts, options.retries + 1, error)
    client.xadd(options.dead_letter_stream, {"url": url, "body": body, "error": error, "attempts": attempts})
    logger.error("webhook %s: gave up after %d attempts; the event is in %s", url, attempts, options.dead_letter_stream)
    return False
