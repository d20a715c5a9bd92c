"""Changing the config or the model while frames flow takes effect on the next frames; the loader is idempotent."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gearcam.config import CONFIG_KEY, STATS_ERRORS_KEY
from gearcam.loader import load, registrations_of
from gearcam.models import load_manifest, verify_artifact
from gearcam.models.check import softmax
from gearcam.models.engines import load_runner
from gearcam.models.preprocess import preprocess
from gearcam.models.upload import StoreOptions, store_model
from tests.conftest import data_file, wait_for
from tests.pipeline.conftest import MODEL, picture, pipeline_settings
from tests.pipeline.test_end_to_end import from_source

pytestmark = pytest.mark.slow


class Feeder:
    """Adds chelsea/coffee frames, alternating, about 5 a second, until stopped; remembers which id is which."""

    def __init__(self, r: redis.Redis, camera: str) -> None:
        self.r, self.camera = r, camera
        self.kinds: dict[str, str] = {}
        self.last_id = "0-0"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        names = ["chelsea.jpg", "coffee.jpg"]
        count = 0
        while not self.stop.wait(0.2):
            name = names[count % 2]
            entry = self.r.xadd(self.camera, {"img": picture(name), "count": count}).decode()
            self.kinds[entry] = name
            self.last_id = entry
            count += 1

    def hits_after(self, boundary: str) -> list[str]:
        """Names of the frames in `cats` added after entry ``boundary``."""
        return [self.kinds.get(f["ref"].decode(), "?") for _, f in from_source(self.r, "cats", self.camera)
                if _after(f["ref"].decode(), boundary)]  # fmt: skip


def _after(entry: str, boundary: str) -> bool:
    a, b = (tuple(int(x) for x in e.split("-")) for e in (entry, boundary))
    return a > b


@pytest.fixture
def feeder(r: redis.Redis, camera: str) -> Iterator[Feeder]:
    f = Feeder(r, camera)
    f.thread.start()
    yield f
    f.stop.set()
    f.thread.join(10)


def test_a_new_target_class_takes_effect_on_the_next_frames(r: redis.Redis, feeder: Feeder) -> None:
    wait_for(lambda: "chelsea.jpg" in feeder.hits_after("0-0"), "a cat hit with the default classes")
    r.hset(CONFIG_KEY, "target_classes", "967")  # espresso
    boundary = feeder.last_id
    wait_for(lambda: feeder.hits_after(boundary).count("coffee.jpg") >= 2, "espresso hits after the change")
    assert set(feeder.hits_after(boundary)) == {"coffee.jpg"}


def test_a_new_model_key_and_a_new_model_take_effect_on_the_next_frames(r: redis.Redis, feeder: Feeder) -> None:
    wait_for(lambda: feeder.hits_after("0-0"), "a hit with the loaded model")
    errors = int(r.hget(STATS_ERRORS_KEY, "model") or 0)
    r.hset(CONFIG_KEY, "model_key", "models:elsewhere")  # nothing stored there yet
    wait_for(lambda: int(r.hget(STATS_ERRORS_KEY, "model") or 0) >= errors + 2, "model errors for the missing key")
    assert b"store the model with `invoke upload`" in (r.hget("gearcam:stats:pipeline", "last_error") or b"")
    boundary = feeder.last_id
    artifact = load_manifest().get("lite0-onnx-int8")
    store_model(r, artifact, verify_artifact(artifact), StoreOptions("models:elsewhere", tag="test"), 1 << 29)
    wait_for(lambda: feeder.hits_after(boundary), "hits from the model stored under the new key")
    # The int8 model's chelsea score, run here by its engine, differs from the fp32 model's (by 0.01 since the
    # int8 export became accurate on CPUs without VNNI), and the pipeline's score matches it far closer than
    # that: the hits really come from the new model.
    expected, fp32 = (_chelsea_top_score(name) for name in ("lite0-onnx-int8", MODEL))
    assert abs(expected - fp32) > 0.005

    def chelsea_scores() -> list[float]:
        return [float(f["score"]) for _, f in from_source(r, "cats", feeder.camera)
                if _after(f["ref"].decode(), boundary) and feeder.kinds.get(f["ref"].decode()) == "chelsea.jpg"]  # fmt: skip

    scores = wait_for(chelsea_scores, "a chelsea hit from the new model")
    assert scores[-1] == pytest.approx(expected, abs=0.002), (scores[-1], expected, fp32)


def _chelsea_top_score(name: str) -> float:
    """The top softmax score of chelsea.jpg from the model run directly by its engine, here."""
    artifact = load_manifest().get(name)
    run = load_runner(artifact, verify_artifact(artifact))
    return float(softmax(run(preprocess(data_file("chelsea.jpg").read_bytes()))[0]).max())


def test_running_the_loader_again_upgrades_in_place_without_a_second_registration(
    r: redis.Redis, camera: str, tmp_path: Path
) -> None:
    settings = pipeline_settings()
    report = load(r, settings)
    assert not report.model_stored  # same artifact, same tag: not sent again
    script = tmp_path / "animal_recognition.py"
    source = (Path(__file__).resolve().parents[2] / "gears" / "animal_recognition.py").read_text()
    script.write_text(source.replace("DESCRIPTION = 'gearcam", "DESCRIPTION = 'upgraded gearcam"))
    load(r, settings, script=script)
    reply = r.execute_command("RG.DUMPREGISTRATIONS")
    assert len(registrations_of(reply, settings.pipeline.gears_id)) == 1
    assert b"upgraded gearcam" in repr(reply).encode()  # the new code is the one registered

    (entry,) = [r.xadd(camera, {"img": picture("chelsea.jpg")}).decode()]
    wait_for(lambda: from_source(r, "cats", camera), "the cat frame after the upgrade")
    wait_for(lambda: len(from_source(r, "all", camera)) >= 1, "the frame in `all`")
    assert [f["ref"].decode() for _, f in from_source(r, "cats", camera)] == [entry]  # once, not twice
    assert [f["ref"].decode() for _, f in from_source(r, "all", camera)] == [entry]
    load(r, settings)  # back to the shipped script


def _worker_threads(r: redis.Redis) -> int:
    """Threads in the Gears worker that runs the pipeline (the same owner's: the default user)."""
    reply = r.execute_command("RG.PYEXECUTE", "import threading\n"
                              "GB('ShardsIDReader').map(lambda x: threading.active_count()).run()")  # fmt: skip
    return int(reply[0][0])


def test_upgrades_leave_no_decode_threads_behind(r: redis.Redis, camera: str, tmp_path: Path) -> None:
    settings = pipeline_settings()
    script = tmp_path / "animal_recognition.py"
    script.write_text((Path(__file__).resolve().parents[2] / "gears" / "animal_recognition.py").read_text())

    def one_frame() -> None:
        before = len(from_source(r, "cats", camera))
        r.xadd(camera, {"img": picture("chelsea.jpg")})
        wait_for(lambda: len(from_source(r, "cats", camera)) > before, "the cat frame")

    one_frame()  # the decode threads run
    start = _worker_threads(r)
    for _ in range(4):
        load(r, settings, script=script)  # RG.PYEXECUTE ... UPGRADE: the old registration goes
        one_frame()
    # Each upgrade starts two decode threads; without onUnregistered the old ones stayed (+8).
    assert _worker_threads(r) <= start + 2
    load(r, settings)
