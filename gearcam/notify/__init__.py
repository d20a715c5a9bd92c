"""``python -m gearcam.notify``: events from the stream ``events`` to MQTT (with Home Assistant discovery) and webhooks.

One job per module: ``event`` (an entry as typed data, topic names), ``consumer`` (the consumer
group: at-least-once, pending entries first), ``mqtt`` (the broker link, last will, publishing
that either completes or raises), ``discovery`` (Home Assistant's config messages), ``webhook``
(POST with retries, backoff, HMAC and the dead-letter stream), ``counts`` (its counters, also
in ``gearcam:stats:notify``), ``service`` (the loop that ties them: an entry is acknowledged
only once MQTT took it, so a broker that is down delays notifications and never drops them).
"""

from gearcam.notify.event import Event
from gearcam.notify.service import Notifier

__all__ = ["Event", "Notifier"]
