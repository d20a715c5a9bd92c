"""``/metrics``: the hub's state and the pipeline counters in Prometheus' text format.

A collector reads the hub when scraped, into a registry of its own (no global registry),
so two servers in one process, or a test, never see each other's numbers.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gearcam.notify.counts import COUNTERS as NOTIFY_COUNTERS
from gearcam.web.hub import Hub

__all__ = ["CONTENT_TYPE", "HubCollector", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PIPELINE_STAGES = ("seen", "forwarded", "sampled", "inferred", "hits", "errors")
RECORD_COUNTERS = (  # gearcam:stats:record field, metric name, help (docs/recording.md)
    ("clips", "gearcam_record_clips", "event clips written"),
    ("bytes", "gearcam_record_bytes", "bytes of event clips written"),
    ("failures", "gearcam_record_failures", "event clips that failed"),
    ("skipped_disk_full", "gearcam_record_skipped_disk_full", "event clips skipped: the disk was full"),
    ("deleted", "gearcam_record_deletions", "clips deleted by retention"),
    ("deleted_bytes", "gearcam_record_deleted_bytes", "bytes of clips deleted by retention"),
    ("gaps", "gearcam_record_gaps", "stretches of missing video in clips"),
)
ADAPT_DECISIONS = ("raise", "lower", "max")  # gearcam:stats:pipeline adapt_<decision> (docs/pipeline.md)


class HubCollector(Collector):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        labels = [hub.stream]
        frames = CounterMetricFamily("gearcam_web_frames", "entries read from the stream", labels=["stream"])
        frames.add_metric(labels, hub.frames_total)
        skipped = CounterMetricFamily(
            "gearcam_web_frames_skipped", "frames slow browsers skipped (closed connections)", labels=["stream"]
        )
        skipped.add_metric(labels, hub.skipped_total + sum(slot.skipped for slot in hub.slots))
        fps = GaugeMetricFamily("gearcam_web_frames_per_second", "stream frame rate, last 5 s", labels=["stream"])
        fps.add_metric(labels, hub.fps())
        clients = GaugeMetricFamily("gearcam_web_clients", "browsers connected", labels=["stream"])
        clients.add_metric(labels, len(hub.slots))
        up = GaugeMetricFamily("gearcam_web_redis_up", "1 while the stream reader reaches Redis", labels=["stream"])
        up.add_metric(labels, 1.0 if hub.redis_up else 0.0)
        stages = CounterMetricFamily("gearcam_pipeline_frames", "frames per pipeline stage", labels=["stage"])
        for stage in PIPELINE_STAGES:
            stages.add_metric([stage], _number(hub.counters.get(stage)))
        errors = CounterMetricFamily("gearcam_pipeline_errors", "pipeline errors by reason", labels=["reason"])
        for reason, count in sorted(hub.errors.items()):
            errors.add_metric([reason], _number(count))
        connected = GaugeMetricFamily("gearcam_camera_connected", "1 while the camera gives frames", labels=["camera"])
        retrying = GaugeMetricFamily("gearcam_camera_retrying_seconds", "seconds the camera has been retrying its "
                                     "source (0 while connected)", labels=["camera"])  # fmt: skip
        for camera in hub.cameras:
            connected.add_metric([camera.stream], 1.0 if camera.connected else 0.0)
            retrying.add_metric([camera.stream], camera.retrying_for() or 0.0)
        yield from (frames, skipped, fps, clients, up, stages, errors, connected, retrying)
        for name, metric, text in RECORD_COUNTERS:
            family = CounterMetricFamily(metric, text)
            family.add_metric([], _number(hub.record.get(name)))
            yield family
        notify = CounterMetricFamily("gearcam_notify", "what the notifier did (gearcam:stats:notify)", labels=["what"])
        for name in NOTIFY_COUNTERS:
            notify.add_metric([name], _number(hub.notify.get(name)))
        decisions = CounterMetricFamily("gearcam_adapt_decisions", "adaptive sampling decisions", labels=["decision"])
        for decision in ADAPT_DECISIONS:
            decisions.add_metric([decision], _number(hub.counters.get(f"adapt_{decision}")))
        p99 = GaugeMetricFamily("gearcam_pipeline_latency_p99_ms", "camera-to-result p99 of the last window "
                                "(while a latency budget is set)")  # fmt: skip
        p99.add_metric([], _number(hub.counters.get("latency_p99_ms")))
        interval = GaugeMetricFamily("gearcam_camera_sample_interval", "sampling interval set by adaptive sampling",
                                     labels=["camera"])  # fmt: skip
        for stream, value in sorted(hub.intervals.items()):
            interval.add_metric([stream], _number(value))
        yield from (notify, decisions, p99, interval)


def _number(value: str | None) -> float:
    try:
        return float(value) if value is not None else 0.0
    except ValueError:
        return 0.0


def render_metrics(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
