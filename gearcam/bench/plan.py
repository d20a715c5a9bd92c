"""What a benchmark run measures and for how long: the ``full``, ``quick``, ``events`` and ``tiny`` plans.

Every measurement runs for a fixed wall-clock window, repeated; the figure quoted is
the median window. So a run's length depends on the plan, not on how fast the machine
is, and ``invoke bench --quick`` stays within its 5 minutes on 2 slow cores.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["FRAME_SIZES", "IMAGE_ITEM", "PLANS", "TABULAR", "TABULAR_ITEM", "Plan", "plan_named"]

IMAGE_ITEM = (224, 224, 3)  # one image: NHWC without the batch dimension (every artifact of models/manifest.yaml)
TABULAR = "tabular"  # the small 30-feature model, built at run time (gearcam.bench.tabular)
TABULAR_ITEM = (30,)
# Camera frame sizes whose decode is measured (gearcam.bench.decode): VGA, 720p, 1080p, 4K.
FRAME_SIZES = ((640, 480), (1280, 720), (1920, 1080), (3840, 2160))


@dataclass(frozen=True)
class Plan:
    """One benchmark configuration; fields are tuples so a plan can be printed into the results as is."""

    name: str
    artifacts: tuple[str, ...]  # manifest entries served (models/manifest.yaml), plus TABULAR
    batches: tuple[int, ...]  # tensor batch sizes of the sweep
    sequential_batches: tuple[int, ...]  # where one-command-at-a-time is compared with the pipelined trio
    clients: tuple[int, ...]  # concurrent single-item clients (the first image artifact, and TABULAR)
    autobatch_clients: int  # clients for the auto-batching on/off comparison on every artifact
    autobatch_size: int  # AI.MODELSTORE BATCHSIZE of the auto-batching variant
    window_s: float  # seconds of one timed window
    repeats: int  # timed windows per figure (the median is quoted)
    warmup_s: float  # untimed seconds before the first window
    http: bool  # the HTTP baseline server
    pipeline_fractions: tuple[float, ...]  # offered frame rates as fractions of decode+infer alone; empty: none
    pipeline_seconds: float  # seconds each rate is offered
    pipeline_refine: int  # offers that bisect between the last rate sustained and the first not
    pipeline_model: str  # manifest entry the pipeline serves
    camera_counts: tuple[int, ...] = ()  # 10 fps cameras offered, gating off then on (gearcam.bench.cameras)
    camera_seconds: float = 4.0  # seconds each camera count is offered
    gating_seconds: float = 10.0  # seconds of the one-camera gating figure: one whole still/moving cycle
    record_cameras: tuple[int, ...] = ()  # cameras whose clips the recorder cuts at once (gearcam.bench.recorder)
    record_clip_s: float = 5.0  # each event's length (the clip adds 2 s before and after)
    relay: bool = True  # the plain-commands-through-the-runtime section, and the same over TLS
    decode_sizes: tuple[tuple[int, int], ...] = FRAME_SIZES  # frames decoded reduced and in full (empty: none)
    steady_seconds: float = 0.0  # how long one camera runs for the steady-memory figure (0: no such section)
    steady_model: str = "lite0-tflite-int8"  # manifest entry of the steady section: what a Jetson Nano runs
    steady_fps: float = 10.0  # that camera's frame rate

    def to_dict(self) -> dict[str, object]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


_ALL = ("lite0-onnx", "lite0-onnx-int8", "lite0-tflite", "lite0-tflite-int8", "lite0-tf", "lite0-torch", TABULAR)

PLANS: dict[str, Plan] = {
    "full": Plan(
        name="full", artifacts=_ALL, batches=(1, 2, 4, 8, 16, 32), sequential_batches=(1, 8, 32),
        clients=(1, 2, 4, 8, 16), autobatch_clients=8, autobatch_size=16, window_s=1.0, repeats=3, warmup_s=0.5,
        http=True, pipeline_fractions=(0.25, 0.5, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.2), pipeline_seconds=6.0,
        pipeline_refine=2, pipeline_model="lite0-onnx", camera_counts=(1, 2, 4, 8, 16, 32, 64), camera_seconds=8.0,
        record_cameras=(1, 2, 4), record_clip_s=10.0, steady_seconds=300.0,
    ),
    "quick": Plan(
        name="quick", artifacts=_ALL, batches=(1, 8), sequential_batches=(1,), clients=(1, 8),
        autobatch_clients=8, autobatch_size=8, window_s=0.4, repeats=3, warmup_s=0.2, http=True,
        pipeline_fractions=(0.5, 0.7, 0.8, 0.9, 1.0), pipeline_seconds=3.0, pipeline_refine=2,
        pipeline_model="lite0-onnx", camera_counts=(1, 2, 4, 8, 16, 32), camera_seconds=4.0, record_cameras=(1, 2),
        record_clip_s=5.0, steady_seconds=30.0,
    ),
    # Only the cameras (gating, adaptive sampling) and the recorder: about two minutes on 2 cores.
    "events": Plan(
        name="events", artifacts=(), batches=(1,), sequential_batches=(), clients=(1,), autobatch_clients=1,
        autobatch_size=1, window_s=0.4, repeats=1, warmup_s=0.0, http=False, pipeline_fractions=(),
        pipeline_seconds=1.0, pipeline_refine=0, pipeline_model="lite0-onnx", camera_counts=(1, 2, 4, 8, 16, 32),
        camera_seconds=4.0, record_cameras=(1, 2), record_clip_s=5.0, relay=False, decode_sizes=(),
    ),
    # For the tests: seconds, the tabular model only, no pipeline.
    "tiny": Plan(
        name="tiny", artifacts=(TABULAR,), batches=(1, 2), sequential_batches=(1,), clients=(1, 2),
        autobatch_clients=2, autobatch_size=2, window_s=0.1, repeats=2, warmup_s=0.0, http=True,
        pipeline_fractions=(), pipeline_seconds=1.0, pipeline_refine=0, pipeline_model="lite0-onnx",
        decode_sizes=((640, 480), (1920, 1080)),
    ),
}  # fmt: skip


def plan_named(name: str, **changes: object) -> Plan:
    """A preset plan, with ``changes`` applied (e.g. ``artifacts=("lite0-onnx",)``)."""
    if name not in PLANS:
        raise ValueError(f"unknown benchmark plan {name!r}; choose one of {', '.join(PLANS)}")
    return replace(PLANS[name], **changes)  # type: ignore[arg-type]
