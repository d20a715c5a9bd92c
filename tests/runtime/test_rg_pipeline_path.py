"""The product's main path: a StreamReader on camera:* with an async model step, uploaded with ID/UPGRADE/REQUIREMENTS.

The first test runs a script shaped like gears/animal_recognition.py with a tiny ONNX model;
the second uploads the real gears/animal_recognition.py and checks the frames it forwards.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import redis
from PIL import Image

from tests.conftest import data_file
from tests.runtime.gears_helpers import counters, pyexecute, registrations, rg, wait_for
from tests.runtime.models import linear_model

__all__ = ["rg"]

ROOT = Path(__file__).resolve().parents[2]
FRAMES = ["chelsea.jpg", "coffee.jpg", "astronaut.jpg", "rocket.jpg"]

SCRIPT = """
import io
import numpy as np
from PIL import Image
import redisAI

def receive(rec):
    flat = execute('HGETALL', 'gearcam:config')
    config = dict(zip(flat[::2], flat[1::2]))
    img = rec['value']['img']
    execute('XADD', 'all', 'MAXLEN', '~', '1000', '*', 'img', img, 'source', rec['key'], 'ref', rec['id'])
    return {'key': rec['key'], 'id': rec['id'], 'img': img, 'threshold': float(config['threshold'])}

def features(img):
    pixels = np.asarray(Image.open(io.BytesIO(bytes(img))).convert('RGB'), dtype=np.float32) / 255.0
    return np.array([[pixels[..., 0].mean(), pixels[..., 1].mean(), pixels[..., 2].mean(), 1.0]], dtype=np.float32)

async def classify(rec):
    x = features(rec['img'])
    runner = redisAI.createModelRunner('models:classifier')
    redisAI.modelRunnerAddInput(runner, 'x', redisAI.createTensorFromBlob('FLOAT', [1, 4], x.tobytes()))
    redisAI.modelRunnerAddOutput(runner, 'y')
    outputs = await redisAI.modelRunnerRunAsync(runner)
    probs = np.frombuffer(bytes(redisAI.tensorGetDataAsBlob(outputs[0])), dtype=np.float32)
    rec['class'] = int(probs.argmax())
    rec['score'] = float(probs.max())
    return rec

def publish(rec):
    execute('XADD', 'cats', 'MAXLEN', '~', '1000', '*', 'img', rec['img'], 'source', rec['key'], 'ref', rec['id'],
            'class', str(rec['class']), 'score', '%.6f' % rec['score'], 'version', VERSION)

VERSION = 'v1'
GB('StreamReader', desc='camera frames').map(receive).map(classify).filter(lambda r: r['score'] >= r['threshold'])\\
    .foreach(publish).register(prefix='camera:*', batch=1, duration=0, mode='async', onFailedPolicy='continue',
                              trimStream=False, convertToStr=False, collect=False)
"""


def _requirements() -> list[str]:
    return ["numpy>=1.19", "Pillow>=8.0"]


def _expected(weights: np.ndarray, bias: np.ndarray, jpeg: bytes) -> tuple[int, float]:
    pixels = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=np.float32) / 255.0
    x = np.array([pixels[..., 0].mean(), pixels[..., 1].mean(), pixels[..., 2].mean(), 1.0], dtype=np.float32)
    logits = x @ weights + bias
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    return int(probs.argmax()), float(probs.max())


def test_camera_frames_are_forwarded_classified_and_published(rg: redis.Redis) -> None:
    blob, weights, bias = linear_model()
    rg.execute_command("AI.MODELSTORE", "models:classifier", "ONNX", "CPU", "BATCHSIZE", 4, "BLOB", blob)
    rg.hset("gearcam:config", mapping={"threshold": "0.0"})
    reply = pyexecute(rg, SCRIPT, "ID", "gearcam-animal-recognition", "UPGRADE", "REQUIREMENTS", *_requirements())
    assert reply == b"OK"
    (reg,) = registrations(rg)
    assert reg["reader"] == b"StreamReader" and reg["desc"] == b"camera frames"
    assert reg["RegistrationData"]["args"]["stream"] == b"camera:*"
    assert b"'sessionId':'gearcam-animal-recognition'" in reg["PD"] and b"'numpy>=1.19'" in reg["PD"]
    sent = {}
    for i, name in enumerate(FRAMES):
        jpeg = data_file(name).read_bytes()
        stream = f"camera:{i % 2}"
        sent[(stream.encode(), rg.xadd(stream, {"img": jpeg, "count": str(i)}))] = jpeg
    wait_for(lambda: rg.xlen("cats") == len(FRAMES), what="every frame classified")
    forwarded = {(fields[b"source"], fields[b"ref"]): fields[b"img"] for _, fields in rg.xrange("all")}
    assert forwarded == sent
    for _, fields in rg.xrange("cats"):
        jpeg = sent[(fields[b"source"], fields[b"ref"])]
        klass, score = _expected(weights, bias, jpeg)
        assert int(fields[b"class"]) == klass and abs(float(fields[b"score"]) - score) < 1e-5
        assert fields[b"img"] == jpeg
    # one execution a frame (batch=1), and on each of the two streams a first one that read its pending entries
    wait_for(lambda: counters(rg)["numSuccess"] == len(FRAMES) + 2, what="the successes counted")

    # Uploading again with UPGRADE swaps the registration and continues where v1 stopped.
    assert pyexecute(rg, SCRIPT.replace("'v1'", "'v2'"), "ID", "gearcam-animal-recognition", "UPGRADE",
                     "REQUIREMENTS", *_requirements()) == b"OK"  # fmt: skip
    (upgraded,) = registrations(rg)
    assert upgraded["id"] != reg["id"]
    rg.xadd("camera:0", {"img": data_file(FRAMES[0]).read_bytes(), "count": "99"})
    wait_for(lambda: rg.xlen("cats") == len(FRAMES) + 1, what="the frame after the upgrade")
    assert rg.xlen("all") == len(FRAMES) + 1
    assert [f[b"version"] for _, f in rg.xrange("cats")] == [b"v1"] * len(FRAMES) + [b"v2"]


def test_a_missing_requirement_is_refused_by_name(rg: redis.Redis) -> None:
    from tests.runtime.conftest import error_of

    error = error_of(rg, "RG.PYEXECUTE", SCRIPT, "ID", "x", "REQUIREMENTS", "numpy", "gearcam-no-such-package==1.0")
    assert error.startswith("Could not satisfy requirements") and "gearcam-no-such-package==1.0" in error
    # The Gears environment's own numpy is a constraint: a requirement cannot replace it.
    assert "numpy" in error_of(rg, "RG.PYEXECUTE", SCRIPT, "REQUIREMENTS", "numpy<1.0")
    assert rg.execute_command("RG.DUMPREGISTRATIONS") == []


def test_the_real_gears_script_registers_and_forwards_frames(rg: redis.Redis) -> None:
    script = ROOT / "gears" / "animal_recognition.py"
    requirements = ROOT / "gears" / "requirements.txt"
    if not script.exists() or not requirements.exists():
        pytest.skip("gears/animal_recognition.py is not in this checkout yet")
    reqs = [line.strip() for line in requirements.read_text().splitlines() if line.strip() and not line.startswith("#")]
    reply = pyexecute(rg, script.read_text(), "ID", "gearcam-animal-recognition", "UPGRADE", "REQUIREMENTS", *reqs)
    assert reply == b"OK"
    (reg,) = registrations(rg)
    assert reg["reader"] == b"StreamReader" and reg["RegistrationData"]["args"]["stream"] == b"camera:*"
    jpeg = data_file("chelsea.jpg").read_bytes()
    ref = rg.xadd("camera:0", {"img": jpeg, "count": "1", "ts": "0"})
    wait_for(lambda: rg.xlen("all") == 1, what="the frame copied to all")
    ((_, fields),) = rg.xrange("all")
    assert fields[b"img"] == jpeg and fields[b"ref"] == ref
