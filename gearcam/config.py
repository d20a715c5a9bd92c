"""One source of configuration for every gearcam process.

Tiers, lowest first: the typed defaults below, the ``gearcam:`` section of
``invoke.yaml``, then environment variables, then command-line flags (applied by
each ``main()``). Only declared keys can be overridden, so a typo fails loudly
with the key and the value instead of being silently ignored.

Environment variables: the well-known names of ARCHITECTURE.md (``REDIS_URL``,
``STREAM``, ``PORT``) plus ``GEARCAM_<SECTION>__<KEY>`` for anything else, e.g.
``GEARCAM_RUNTIME__THREADS_PER_QUEUE=2``.

The names shared by all parts (streams, keys, ports) are defined here once.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from gearcam.errors import ConfigError

__all__ = [
    "BACKING_PORT",
    "BIND_MAX",
    "BIND_MISSING",
    "ModelsSettings",
    "CAMERA_PREFIX",
    "CAMERA_STREAM",
    "CONFIG_KEY",
    "GEARS_ID",
    "LABELS_KEY",
    "CameraSettings",
    "EVENTS_STREAM",
    "MQTT_PORT",
    "EventsSettings",
    "PipelineSettings",
    "RecordSettings",
    "STATS_RECORD_KEY",
    "STATS_NOTIFY_KEY",
    "STATS_ERRORS_KEY",
    "STATS_PIPELINE_KEY",
    "WebSettings",
    "HostSettings",
    "ShipSettings",
    "UpSettings",
    "MODEL_KEY",
    "REDIS_PORT",
    "STATS_PREFIX",
    "STREAM_ALL",
    "STREAM_CATS",
    "WEB_ALL_PORT",
    "WEB_CATS_PORT",
    "RuntimeSettings",
    "Settings",
    "load_settings",
    "bind_addresses",
    "redact_url",
    "runtime_flag",
]

# ARCHITECTURE.md §2: the contract between the parts.
REDIS_PORT = 6379
BACKING_PORT = 6380
WEB_ALL_PORT = 3000
WEB_CATS_PORT = 3001
CAMERA_PREFIX = "camera:"
STREAM_ALL = "all"
STREAM_CATS = "cats"
MODEL_KEY = "models:classifier"
CONFIG_KEY = "gearcam:config"
STATS_PREFIX = "gearcam:stats:"
CAMERA_STREAM = f"{CAMERA_PREFIX}0"
# docs/pipeline.md: the keys the Gears script, the loader, the camera and the web pages share.
STATS_PIPELINE_KEY = f"{STATS_PREFIX}pipeline"  # hash: seen, forwarded, sampled, inferred, hits, errors, last_error
STATS_ERRORS_KEY = f"{STATS_PREFIX}errors"  # hash: error reason -> count
LABELS_KEY = "gearcam:labels"  # list: the model's class names, index = class id (written by the loader)
GEARS_ID = "gearcam-animal-recognition"  # RG.PYEXECUTE ID of gears/animal_recognition.py
STATS_RECORD_KEY = f"{STATS_PREFIX}record"  # hash: the recorder's counters (clips, bytes, failures, deleted, …)
STATS_NOTIFY_KEY = f"{STATS_PREFIX}notify"  # hash: the notifier's counters (handled, failed_attempts, dead_letters, …)
MQTT_PORT = 1883  # the embedded mosquitto of `invoke up` (events.broker_port)
EVENTS_STREAM = "events"  # stream: one entry per event change (new/update/end), written by the Gears script

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def runtime_flag(name: str) -> str:
    """How an operator sets runtime.<name>: the flag, the invoke.yaml key, the environment variable."""
    return f"--{name.replace('_', '-')} (runtime.{name}, GEARCAM_RUNTIME__{name.upper()})"


BIND_MAX = 16  # Redis' CONFIG_BINDADDR_MAX
# Why an address marked optional ('-::1') is skipped, as Redis skips it: the machine lacks it or its family.
BIND_MISSING = frozenset({errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT,
                          errno.EPFNOSUPPORT, errno.ENOPROTOOPT})  # fmt: skip


def bind_addresses(bind: str) -> list[tuple[str, bool]]:
    """Redis' `bind` list: each address as a socket takes it, and whether it is optional.

    Redis reads `bind 127.0.0.1 -::1` (its redis.conf's) as: listen on both, but skip `::1` where
    the machine has no such address or no IPv6 at all. `*` is every IPv4 address, `::*` every
    IPv6 one. An empty value is every address (asyncio's meaning, kept from one-address days).
    """
    words = bind.split()
    if len(words) > BIND_MAX:
        raise ValueError("Too many bind addresses specified.")
    if not words:
        return [("", False)]
    listed = []
    for word in words:
        optional = word.startswith("-")
        address = word[1:] if optional else word
        if not address:
            raise ValueError(f"{word!r} names no address: write '-' right before an address (-::1)")
        listed.append(({"*": "0.0.0.0", "::*": "::"}.get(address, address), optional))
    return listed


class RuntimeSettings(_Section):
    """The RESP server that serves AI.* and RG.* in front of a stock redis-server."""

    host: str = Field(
        "127.0.0.1 -::1",
        description="addresses the runtime listens on, as Redis' bind: separated by spaces, '-' before one that may "
        "be missing (skipped where the machine lacks it), '*' every IPv4 address, '::*' every IPv6 one",
    )
    port: int = Field(REDIS_PORT, ge=0, le=65535, description="public RESP port (0: none, as Redis' port 0)")
    unixsocket: str | None = Field(None, description="also listen on this unix socket")
    tls_port: int = Field(0, ge=0, le=65535, description="port serving RESP over TLS, as Redis' tls-port (0: none)")
    tls_cert_file: str | None = Field(None, description="Redis' tls-cert-file: the server's certificate (PEM)")
    tls_key_file: str | None = Field(None, description="Redis' tls-key-file: the certificate's private key (PEM)")
    tls_key_file_pass: SecretStr | None = Field(None, description="Redis' tls-key-file-pass: the key's passphrase")
    tls_ca_cert_file: str | None = Field(
        None, description="Redis' tls-ca-cert-file: CA certificates that clients' certificates must chain to"
    )
    tls_ca_cert_dir: str | None = Field(None, description="Redis' tls-ca-cert-dir: a c_rehash'ed folder of them")
    tls_auth_clients: Literal["yes", "no", "optional"] = Field(
        "yes", description="Redis' tls-auth-clients: whether clients must present a certificate the CA signed"
    )
    tls_protocols: str = Field(
        "TLSv1.2 TLSv1.3", description="Redis' tls-protocols: the TLS versions served, separated by spaces"
    )
    tls_ciphers: str | None = Field(None, description="Redis' tls-ciphers: OpenSSL's cipher list for TLSv1.2 and below")
    tls_prefer_server_ciphers: bool = Field(
        False, description="Redis' tls-prefer-server-ciphers: the server's cipher order wins over the client's"
    )
    tls_dh_params_file: str | None = Field(None, description="Redis' tls-dh-params-file: DH parameters (PEM)")
    tls_client_cert_file: str | None = Field(
        None, description="Redis' tls-client-cert-file: the certificate shown to a rediss:// backing Redis "
        "(default: tls_cert_file)",
    )  # fmt: skip
    tls_client_key_file: str | None = Field(None, description="Redis' tls-client-key-file: its private key")
    tls_client_key_file_pass: SecretStr | None = Field(
        None, description="Redis' tls-client-key-file-pass: that key's passphrase"
    )
    backing_url: str | None = Field(
        None,
        description="redis://, rediss:// (TLS) or unix:// URL of the backing redis-server; unset means start an "
        "embedded one",
    )
    backing_port: int = Field(BACKING_PORT, ge=0, le=65535, description="port of the embedded backing redis-server")
    threads_per_queue: int = Field(1, ge=1, le=64, description="RedisAI THREADS_PER_QUEUE: workers per device queue")
    intra_op_parallelism: int = Field(
        0,
        ge=0,
        description="RedisAI INTRA_OP_PARALLELISM (0: the engine's default; TFLite and Torch: the cores shared "
        "among THREADS_PER_QUEUE)",
    )
    inter_op_parallelism: int = Field(0, ge=0, description="RedisAI INTER_OP_PARALLELISM (0: engine default)")
    model_execution_timeout: int = Field(
        5000, ge=1000, description="RedisAI MODEL_EXECUTION_TIMEOUT in ms (ONNX runs are stopped after it)"
    )
    model_chunk_size: int = Field(511 * 1024 * 1024, gt=0, description="RedisAI MODEL_CHUNK_SIZE in bytes")
    backends_path: str = Field(
        "", description="RedisAI BACKENDSPATH, reported by AI.CONFIG GET (empty: the runtime's engines directory)"
    )
    backend_memory_limit: int = Field(
        0, ge=0, description="RedisAI BACKEND_MEMORY_LIMIT in MB (0: none): the most ONNX runs allocate"
    )
    inline_run_us: int = Field(
        300,
        ge=0,
        description="an ONNX or TFLite model whose last run took under this many µs runs on the runtime's own thread "
        "when its queue is idle, instead of being handed to a queue thread (0: never)",
    )
    tensor_cache_mb: int = Field(
        256, ge=0, description="memory for tensors the runtime just wrote or read, so a pipeline does not re-read them"
    )
    write_ack: Literal["auto", "stored"] = Field(
        "auto",
        description="when AI writes are answered: 'auto' once sent to the backing Redis where its reply would promise "
        "no more (no AOF, nothing that may refuse a write), else once Redis has them; 'stored' always once Redis "
        "has them",
    )
    max_request_size: int = Field(
        1024 * 1024 * 1024, gt=0, description="largest request a client may send, in bytes (Redis' query buffer limit)"
    )
    maxmemory_clients: int = Field(
        1024 * 1024 * 1024,
        ge=0,
        description="bytes of unfinished requests all clients together may hold; past it the client holding the most "
        "is disconnected (Redis' maxmemory-clients; 0: no limit)",
    )
    maxclients: int = Field(
        10000,
        ge=1,
        le=4294967295,
        description="most clients connected at once; one more is told 'ERR max number of clients reached' and closed "
        "(Redis' maxclients; lowered at start to what the open files limit allows, two files a client)",
    )
    protected_mode: bool = Field(
        True,
        description="refuse clients from other hosts while the backing Redis has no password (Redis' protected-mode)",
    )
    connect_timeout: float = Field(5.0, gt=0, description="seconds to wait for the backing redis-server")
    start_wait: float = Field(
        30.0,
        ge=0,
        description="seconds the runtime waits at start for a backing Redis that does not accept connections yet "
        "(its container starting beside the runtime's); 0: exit at once",
    )
    shutdown_grace: float = Field(5.0, ge=0, description="seconds in-flight commands get on shutdown")
    gears_execution_threads: int = Field(
        8, ge=1, le=256, description="RedisGears ExecutionThreads: threads of each Gears worker that run steps"
    )
    gears_python: str | None = Field(
        None, description="Python of the Gears virtualenv scripts run in; unset: .venv-gears, else the runtime's own"
    )
    gears_max_memory_mb: int = Field(
        1024, ge=0, description="a Gears worker whose resident memory passes this many MiB is replaced (0: no limit)"
    )
    gears_max_execution_seconds: float = Field(
        300.0, ge=0, description="an execution (or a script's top level) running longer is aborted (0: no limit)"
    )
    gears_abort_grace: float = Field(
        2.0, gt=0, description="seconds an aborted execution gets to stop before its worker is replaced"
    )
    gears_user: str | None = Field(
        "nobody", description="when the runtime runs as root, Gears workers run as this user (unset: as root)"
    )
    gears_wheelhouse: str | None = Field(
        None, description="folder of wheels REQUIREMENTS are installed from first (for nodes without network)"
    )
    gears_download: bool = Field(
        True, description="RedisGears DownloadDeps: let pip download REQUIREMENTS from the package index"
    )
    gears_index_url: str | None = Field(None, description="package index for REQUIREMENTS; unset: pip's own setting")

    @field_validator("host")
    @classmethod
    def _bind_list(cls, value: str) -> str:
        bind_addresses(value)  # raises with Redis' reason
        return value

    @model_validator(mode="after")
    def _listens_somewhere(self) -> RuntimeSettings:
        if not (self.port or self.tls_port or self.unixsocket):
            raise ValueError(
                "the runtime would listen nowhere: port and tls_port are 0 and no unixsocket is set; set one of them"
            )
        return self

    @field_validator("tls_auth_clients", mode="before")
    @classmethod
    def _yaml_boolean(cls, value: Any) -> Any:
        """YAML reads Redis' spelling `tls_auth_clients: yes` as a boolean."""
        return {True: "yes", False: "no"}.get(value, value) if isinstance(value, bool) else value


class ModelsSettings(_Section):
    """The classifier the loader stores with AI.MODELSTORE; models/manifest.yaml lists the artifacts."""

    name: str = Field(
        "lite0-tflite",
        min_length=1,
        description="manifest entry to upload (`invoke upload --model NAME`); TFLITE loads on RedisAI and the runtime",
    )
    key: str = Field(MODEL_KEY, min_length=1, description="Redis key the model is stored at")
    device: str = Field("CPU", pattern=r"(?i)^(CPU|GPU)(:[0-9]+)?$", description="RedisAI device: CPU, GPU or GPU:<n>")
    tag: str | None = Field(None, description="AI.MODELSTORE TAG; unset means '<name>@<first 12 of sha256>'")
    batchsize: int = Field(4, ge=0, description="AI.MODELSTORE BATCHSIZE: auto-batch up to this many frames (0: off)")
    minbatchsize: int = Field(0, ge=0, description="MINBATCHSIZE: wait for this many frames (needs batchsize)")
    minbatchtimeout: int = Field(
        0, ge=0, description="MINBATCHTIMEOUT in ms: run a smaller batch after this wait (needs minbatchsize)"
    )
    store_timeout: float = Field(60.0, gt=0, description="seconds to wait for AI.MODELSTORE's reply")


class PipelineSettings(_Section):
    """What the loader writes to the config hash (gearcam:config); the Gears script reads it on every frame."""

    sample_every: int = Field(1, ge=1, le=100000, description="classify every Nth frame of each camera stream")
    threshold: float = Field(0.25, ge=0.0, le=1.0, description="least softmax score of the top class to count a hit")
    target_classes: str = Field(
        "281-285", pattern=r"^\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*$",
        description="ImageNet class ids (0-999) that are hits: '281-285' (cats) or '281,282,285'",
    )  # fmt: skip
    hits_stream: str = Field(STREAM_CATS, min_length=1, description="stream the hits go to")
    stream_maxlen: int = Field(1000, ge=1, description="MAXLEN ~ of the 'all' and hits streams")
    max_frame_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="frames larger than this are refused")
    gears_id: str = Field(GEARS_ID, min_length=1, description="RG.PYEXECUTE ID of the Gears script")

    @field_validator("target_classes")
    @classmethod
    def _classes_in_imagenet(cls, value: str) -> str:
        for part in value.replace(" ", "").split(","):
            low, _, high = part.partition("-")
            if not 0 <= int(low) <= int(high or low) <= 999:
                raise ValueError(f"class range {part!r} must lie within 0-999, low to high")
        return value


class CameraSettings(_Section):
    """`python -m gearcam.camera`: where frames come from and how they are written to camera:<n>."""

    source: str = Field(
        "samples", min_length=1,
        description="samples, a V4L2 index or /dev/videoN, csi[:N], an rtsp/http URL, a video file, a folder or glob",
    )  # fmt: skip
    stream: str = Field(CAMERA_STREAM, min_length=1, description="stream the frames are added to")
    fps: float = Field(5.0, gt=0, le=120, description="frames per second written to the stream")
    width: int = Field(640, ge=16, le=7680, description="frame width in pixels")
    height: int = Field(480, ge=16, le=4320, description="frame height in pixels")
    quality: int = Field(85, ge=1, le=100, description="JPEG quality")
    maxlen: int = Field(1000, ge=1, description="MAXLEN ~ of the camera stream")
    backoff_max: float = Field(10.0, gt=0, description="longest wait between reconnection attempts, in seconds")
    wait_for_source: bool = Field(
        False, description="keep retrying a source that cannot be opened at start (default: exit with the reason)"
    )
    open_timeout: float = Field(8.0, gt=0, le=300, description="seconds a network camera may take to open or answer")


class WebSettings(_Section):
    """`python -m gearcam.web`: one page per stream (env STREAM and PORT)."""

    stream: str = Field(STREAM_ALL, min_length=1, description="stream shown (STREAM)")
    port: int = Field(WEB_ALL_PORT, ge=0, le=65535, description="HTTP port (PORT); `invoke up`'s page of `all`")
    hits_port: int | None = Field(
        None, ge=1, le=65535, description="`invoke up`'s page of the hits stream; unset: web.port + 1 (3001)"
    )
    host: str = Field(
        "127.0.0.1", description="address to listen on; another than loopback needs web.token (or web.anonymous)"
    )
    token: SecretStr | None = Field(
        None, description="login for the pages, WebSocket and /metrics (GEARCAM_WEB__TOKEN; k3s: Secret gearcam-web)"
    )
    anonymous: bool = Field(
        False, description="serve a non-loopback web.host without a token, on purpose: anyone there sees the cameras"
    )
    block_ms: int = Field(1000, ge=10, le=60000, description="XREAD BLOCK timeout in ms")
    stats_interval: float = Field(1.0, gt=0, description="seconds between counter updates sent to the browsers")
    backoff_max: float = Field(5.0, gt=0, description="longest wait between Redis reconnection attempts, in seconds")


class HostSettings(_Section):
    """An edge node that `invoke deploy --host NAME` ships gearcam to (gearcam.ship.hosts.NAME in invoke.yaml)."""

    ssh: str = Field(min_length=1, description="SSH alias of the node (~/.ssh/config), for `docker load` over SSH")
    context: str | None = Field(None, description="kubectl context of its cluster; unset: kubectl's current context")
    node: str = Field(min_length=1, description="its Kubernetes node name (`kubectl get nodes`)")
    arch: Literal["arm64v8", "x64"] = Field("arm64v8", description="image architecture: arm64v8 (Jetson) or x64")
    overlay: Literal["jetson-nano", "x64", "runtime"] | None = Field(
        None, description="deploy/overlays/<name> to apply; unset: jetson-nano for arm64v8, x64 for x64"
    )
    ship: Literal["ssh", "registry"] = Field(
        "ssh", description="ssh: `docker save | ssh NODE docker load`; registry: push to ship.registry, the node pulls"
    )


def _default_hosts() -> dict[str, HostSettings]:
    return {"jetson": HostSettings(ssh="jetson", context="default", node="jetson-nano")}


class ShipSettings(_Section):
    """Images, versions and edge hosts for `invoke build`, `push`, `deploy`, `undeploy` and `logs`."""

    registry: str = Field("", description="registry host[:port][/path] images are pushed to; empty: local names only")
    tag: str = Field("0.1.0", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}$", description="image tag (before -<arch>)")
    redis_version: str = Field("6.2.14", description="REDIS_VER: Redis built into the module images")
    ai_version: str = Field("1.2.7", description="AI_VER of the x64 image: RedisAI release tag")
    jetson_ai_version: str = Field(
        "1.2.4", description="AI_VER of the Jetson image: 1.2.4, the last RedisAI with arm64/Jetson dependencies"
    )
    gears_version: str = Field(
        "1.2.12", description="GEARS_VER: RedisGears release tag (1.2.12: the last one that builds on Ubuntu 18.04)"
    )
    l4t_version: str = Field("r32.7.1", description="L4T_VER: JetPack 4.6.x base image tag for the Jetson image")
    osnick: str = Field("bionic", description="OSNICK: the Ubuntu of that L4T release (bionic for r32)")
    namespace: str = Field("gearcam", min_length=1, description="Kubernetes namespace the overlays use")
    timeout: int = Field(600, ge=10, description="seconds to wait for the rollout and for the loader Job")
    hosts: dict[str, HostSettings] = Field(
        default_factory=_default_hosts, description="edge nodes by name; the default names one example, `jetson`"
    )


class EventsSettings(_Section):
    """`python -m gearcam.notify`: events from the stream `events` to MQTT and webhooks."""

    mqtt_url: str | None = Field(
        None, pattern=r"^mqtts?://",
        description="MQTT broker (mqtt[s]://[user:password@]host:port); unset: the loopback mosquitto on broker_port",
    )  # fmt: skip
    broker_port: int = Field(
        MQTT_PORT, ge=1, le=65535, description="port of the loopback mosquitto of `invoke up` (when mqtt_url is unset)"
    )
    topic_prefix: str = Field("gearcam", min_length=1, description="MQTT topics: <prefix>/events, <prefix>/<camera>/…")
    discovery_prefix: str = Field("homeassistant", min_length=1, description="Home Assistant MQTT discovery prefix")
    webhooks: list[str] = Field(default_factory=list, description="URLs each event is POSTed to as JSON")
    hmac_secret: SecretStr | None = Field(
        None, description="signs webhook bodies: header X-Gearcam-Signature: sha256=<hex HMAC of the body>"
    )
    retries: int = Field(5, ge=0, le=100, description="webhook attempts after the first, before the dead-letter stream")
    backoff: float = Field(0.5, gt=0, le=60, description="first wait between webhook attempts (doubles), seconds")
    timeout: float = Field(5.0, gt=0, le=120, description="seconds a broker or webhook may take to answer")
    stream: str = Field(EVENTS_STREAM, min_length=1, description="stream the events are read from")
    group: str = Field("notifier", min_length=1, description="consumer group on the stream `events`")
    dead_letter_stream: str = Field("events:dead", min_length=1, description="webhook deliveries that kept failing")

    @property
    def broker_url(self) -> str:
        """mqtt_url, or the loopback mosquitto of `invoke up`."""
        return self.mqtt_url or f"mqtt://127.0.0.1:{self.broker_port}"

    @field_validator("webhooks", mode="before")
    @classmethod
    def _webhooks_from_text(cls, value: Any) -> Any:
        """GEARCAM_EVENTS__WEBHOOKS=url1,url2: the environment gives text."""
        return [url.strip() for url in value.split(",") if url.strip()] if isinstance(value, str) else value


class RecordSettings(_Section):
    """`python -m gearcam.record`: a clip and a snapshot per finished event, and their retention (docs/recording.md)."""

    data_dir: Path = Field(PROJECT_ROOT / ".gearcam" / "media", description="clips go to <data_dir>/clips/<camera>/…")
    pre_roll_s: float = Field(5.0, ge=0, le=600, description="video before the first hit (config hash: pre_roll_s)")
    post_roll_s: float = Field(5.0, ge=0, le=600, description="video after the last hit (config hash: post_roll_s)")
    codec: Literal["auto", "avc1", "vp09", "mp4v"] = Field(
        "auto", description="MP4 video codec; auto: H.264 where PyAV's FFmpeg encodes it, else VP9 (browsers play both)"
    )
    retain_days: float = Field(7.0, ge=0, description="clips whose event is older are deleted (0: no age limit)")
    max_bytes_per_camera: int = Field(
        2 * 1024**3, ge=0, description="a camera's clips beyond this many bytes are deleted, oldest first (0: none)"
    )
    min_free_bytes: int = Field(
        256 * 1024**2, ge=0, description="free disk kept: the oldest clips go first, then new clips are skipped"
    )
    group: str = Field("recorder", min_length=1, description="consumer group on the stream `events`")
    consumer: str = Field("recorder-1", min_length=1, description="consumer name (fixed, so a restart resumes)")
    block_ms: int = Field(1000, ge=10, le=60000, description="XREADGROUP BLOCK timeout in ms")
    retention_interval: float = Field(60.0, gt=0, description="seconds between retention passes")


class UpSettings(_Section):
    """`invoke up` and `invoke down`: where the local run keeps its state, and how long it waits."""

    state_dir: Path = Field(
        PROJECT_ROOT / ".gearcam", description="run/ (pid and state files), data/ (Redis' dump), logs/ of `invoke up`"
    )
    loader_wait: float = Field(60.0, gt=0, description="seconds the loader waits for the runtime to answer")
    stop_timeout: float = Field(15.0, gt=0, description="seconds each service gets to stop before it is killed")


class Settings(_Section):
    redis_url: str = Field(
        f"redis://localhost:{REDIS_PORT}",
        description="where clients reach Redis (or the runtime); unset: the runtime's runtime.host and runtime.port",
    )
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    camera: CameraSettings = Field(default_factory=CameraSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    ship: ShipSettings = Field(default_factory=ShipSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    record: RecordSettings = Field(default_factory=RecordSettings)
    up: UpSettings = Field(default_factory=UpSettings)

    @model_validator(mode="after")
    def _redis_url_follows_the_runtime(self) -> Settings:
        """Without REDIS_URL (or redis_url in invoke.yaml), clients go where the runtime listens."""
        if "redis_url" not in self.model_fields_set and self.runtime.port:
            host = bind_addresses(self.runtime.host)[0][0]
            host = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::", "", "localhost") else host
            host = f"[{host}]" if ":" in host else host
            self.__dict__["redis_url"] = f"redis://{host}:{self.runtime.port}"
        return self


# Well-known environment variables (ARCHITECTURE.md §2) and the key each one sets.
_ALIASES = {"REDIS_URL": ("redis_url",), "STREAM": ("web", "stream"), "PORT": ("web", "port")}
_PREFIX = "GEARCAM_"
logger = logging.getLogger(__name__)


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _set_path(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, path in _ALIASES.items():
        if name in environ:
            _set_path(found, path, environ[name])
    for name, value in environ.items():
        if not name.startswith(_PREFIX) or len(name) == len(_PREFIX):
            continue
        path = tuple(name[len(_PREFIX) :].lower().split("__"))
        if path[0] not in Settings.model_fields:
            # Not ours: Kubernetes adds GEARCAM_WEB_PORT=tcp://... for a Service named gearcam-web.
            # A misspelt key inside a section (GEARCAM_RUNTIME__PORTT) still fails below.
            logger.debug("ignoring environment variable %s: %r is not a gearcam setting", name, path[0])
            continue
        _set_path(found, path, value)
    return found


def _from_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; fix the file or remove it") from exc
    section = data.get("gearcam", {}) if isinstance(data, dict) else {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: 'gearcam' must be a mapping, got {type(section).__name__}")
    return section


def load_settings(
    yaml_path: Path | None = None, environ: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Build the settings from every tier; ``overrides`` are the CLI-flag tier."""
    tree: dict[str, Any] = {}
    path = yaml_path if yaml_path is not None else PROJECT_ROOT / "invoke.yaml"
    if path.exists():
        tree = _merge(tree, _from_yaml(path))
    tree = _merge(tree, _from_environ(os.environ if environ is None else environ))
    tree = _merge(tree, overrides)
    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}={err.get('input')!r}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid gearcam configuration: {problems}") from exc


def redact_url(url: str) -> str:
    """The URL with its password replaced, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
