# gearcam: find cats in camera frames, inside Redis (RedisGears 1.2, Python 3.7).
#
# Uploaded by the loader (python -m gearcam.loader) with
#   RG.PYEXECUTE <this file> ID gearcam-animal-recognition UPGRADE REQUIREMENTS <gears/requirements.txt>
# so running the loader again swaps this registration for the new code instead of adding one.
#
# One registration on every camera stream (prefix camera:*), one record per frame:
#   1. read the parameters from the config hash (gearcam:config) -- on every frame, so a change
#      takes effect on the next frames without uploading the script again;
#   2. check the frame (present, not empty, under max_frame_bytes, an image signature) and copy it
#      to the stream `all` (img, source, ref);
#   3. keep every Nth frame of each camera stream (sample_every; counted in Redis, so the count
#      survives an upgrade and is shared by every worker);
# Counters: gearcam:stats:pipeline (seen, forwarded, sampled, inferred, hits, errors, last_error,
# last_ms), gearcam:stats:errors (reason -> count), and per camera gearcam:stats:camera:<n>
# (frames, sampled, inferred, hits, errors).
#   4. decode, resize the shorter side to 256, centre-crop 224, (x - 127) / 128, NHWC float32;
#   5. run the model through redisAI's async model runner (Redis' main thread is never blocked,
#      and RedisAI batches concurrent frames when the model was stored with BATCHSIZE);
#   6. keep the frame when its top class is one of target_classes (ImageNet indices, never a
#      substring of a label) with softmax score >= threshold, and XADD it to the hits stream
#      (cats) with label, class, score and ms (inference time).
# Every failure is counted with its reason (gearcam:stats:errors), remembered as last_error
# (gearcam:stats:pipeline), logged, and the record is dropped: the pipeline goes on. The same
# failure on every frame is logged once a minute with its count, not once per frame. A bad value
# in the config hash drops nothing: it is reported once per change (config_error in
# gearcam:stats:pipeline, one count under 'config', one log line) with the value used instead.
#
# Image decoding: Pillow + numpy. They are what the Jetson image's Gears Python (3.7) installs
# from gears/requirements.txt, and the same library the reference preprocessing
# (gearcam/models/preprocess.py) uses, so the tensor here equals the one the model was checked with.
# Nothing here imports gearcam: this file runs inside Redis.

import io
import time

import numpy as np
from PIL import Image

try:
    import redisAI  # RedisAI's Python API, present inside RedisGears when redisai.so is loaded
except ImportError:  # a plain import (the tests) only uses the pure functions below
    redisAI = None

CONFIG_KEY = 'gearcam:config'
STATS_KEY = 'gearcam:stats:pipeline'
ERRORS_KEY = 'gearcam:stats:errors'
CAMERA_STATS_PREFIX = 'gearcam:stats:'
CONFIG_REPORTED_KEY = 'gearcam:stats:config_reported'  # the config problem last reported ('' when none)
ALL_STREAM = 'all'
DESCRIPTION = 'gearcam animal recognition: camera:* -> all, sampled frames classified -> cats'

DEFAULTS = {
    'sample_every': 1,
    'threshold': 0.25,
    'target_classes': frozenset(range(281, 286)),
    'model_key': 'models:classifier',
    'model_input': 'input',
    'model_output': 'logits',
    'labels_key': 'gearcam:labels',
    'hits_stream': 'cats',
    'stream_maxlen': 1000,
    'max_frame_bytes': 8 * 1024 * 1024,
}
DEFAULT_SHOWN = {'target_classes': '281-285'}
MODEL_MISSING = ('key is empty', 'does not exist', 'not found', 'wrongtype')
LOG_REPEAT_S = 60  # the same failure is logged at most once a minute
MAX_PIXELS = 40 * 1000 * 1000  # a frame that decodes to more than this is refused before decoding
RESIZE = 256
CROP = 224
MEAN = 127.0
SCALE = 128.0
# Pillow >= 9.1 names its filters in Image.Resampling; older ones (the Jetson's) on Image.
BILINEAR = getattr(getattr(Image, 'Resampling', Image), 'BILINEAR')
SIGNATURES = (b'\xff\xd8\xff', b'\x89PNG\r\n\x1a\n', b'BM', b'GIF8', b'RIFF')


class FrameError(Exception):
    """A frame or a step failed; `reason` is the counter it is filed under."""

    def __init__(self, reason, detail):
        Exception.__init__(self, detail)
        self.reason = reason
        self.detail = detail


# -- parameters ------------------------------------------------------------------------------------

def parse_classes(text):
    """'281-285' or '281,282,285' -> frozenset of ImageNet indices (0-999)."""
    found = set()
    for part in str(text).split(','):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition('-')
        low = int(low)
        high = int(high) if high.strip() else low
        if not 0 <= low <= high <= 999:
            raise ValueError('class range %r is outside 0-999' % part)
        found.update(range(low, high + 1))
    if not found:
        raise ValueError('no classes in %r' % (text,))
    return frozenset(found)


_PARSERS = {
    'sample_every': lambda v: _bounded(int(v), 1, None),
    'threshold': lambda v: _bounded(float(v), 0.0, 1.0),
    'target_classes': parse_classes,
    'model_key': lambda v: _non_empty(v),
    'model_input': lambda v: _non_empty(v),
    'model_output': lambda v: _non_empty(v),
    'labels_key': lambda v: _non_empty(v),
    'hits_stream': lambda v: _non_empty(v),
    'stream_maxlen': lambda v: _bounded(int(v), 1, None),
    'max_frame_bytes': lambda v: _bounded(int(v), 1, None),
}


def _bounded(value, low, high):
    if value < low or (high is not None and value > high):
        raise ValueError('%s is outside %s..%s' % (value, low, high if high is not None else 'inf'))
    return value


def _non_empty(value):
    value = _text(value).strip()
    if not value:
        raise ValueError('empty')
    return value


def _text(value):
    return value.decode('utf-8', 'replace') if isinstance(value, bytes) else str(value)


def _pairs(reply):
    if isinstance(reply, dict):
        return [(_text(k), v) for k, v in reply.items()]
    reply = list(reply or [])
    return [(_text(reply[i]), reply[i + 1]) for i in range(0, len(reply) - 1, 2)]


def parse_config(reply):
    """The config hash (HGETALL reply) as parameters, and the problems found; a bad field keeps its default."""
    params = dict(DEFAULTS)
    problems = []
    for name, raw in _pairs(reply):
        parse = _PARSERS.get(name)
        if parse is None:
            continue  # other fields are for other readers
        try:
            params[name] = parse(_text(raw))
        except (ValueError, TypeError) as exc:
            problems.append('%s=%s: %s; using %s (the default) until it is fixed'
                            % (name, _text(raw) or "''", exc, DEFAULT_SHOWN.get(name, DEFAULTS[name])))
    return params, problems


# -- image -----------------------------------------------------------------------------------------

def check_frame(img, limit):
    """Why the frame cannot be a picture, before anything is copied or decoded: FrameError, else None."""
    if img is None:
        raise FrameError('no_image', "the entry has no 'img' field")
    if len(img) == 0:  # before the text test: Gears hands an empty value over as ''
        raise FrameError('empty', "'img' is empty")
    if isinstance(img, str):
        raise FrameError('not_image', "'img' is text (%d chars), not JPEG bytes" % len(img))
    if len(img) > limit:
        raise FrameError('too_large', "'img' is %d bytes, over max_frame_bytes=%d" % (len(img), limit))
    if not bytes(img[:8]).startswith(SIGNATURES):
        raise FrameError('not_image', "'img' (%d bytes) does not start like a JPEG or PNG" % len(img))


def preprocess(img):
    """Encoded frame -> float32 [1, 224, 224, 3]: RGB, shorter side 256, centre crop 224, (x - 127) / 128."""
    try:
        image = Image.open(io.BytesIO(img))
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise FrameError('too_large', 'frame is %dx%d pixels, over %d' % (width, height, MAX_PIXELS))
        image.load()
        rgb = image.convert('RGB')
    except FrameError:
        raise
    except Exception as exc:  # Pillow raises OSError, ValueError, SyntaxError... for broken data
        raise FrameError('decode', 'cannot decode %d bytes: %s' % (len(img), exc))
    width, height = rgb.size
    if width <= height:
        size = (RESIZE, int(RESIZE * height / width))
    else:
        size = (int(RESIZE * width / height), RESIZE)
    if min(width, height) != RESIZE:
        rgb = rgb.resize(size, BILINEAR)
    left = int(round((rgb.width - CROP) / 2.0))
    top = int(round((rgb.height - CROP) / 2.0))
    rgb = rgb.crop((left, top, left + CROP, top + CROP))
    pixels = np.asarray(rgb, dtype=np.float32)
    return ((pixels - MEAN) / SCALE)[np.newaxis]


def top_class(logits):
    """(class index, softmax score) of the best class in a [1, C] logits vector."""
    values = np.asarray(logits, dtype=np.float64).reshape(-1)
    exp = np.exp(values - values.max())
    probs = exp / exp.sum()
    best = int(probs.argmax())
    return best, float(probs[best])


# -- Redis side (only inside RedisGears: execute, log and redisAI exist there) -----------------------

_logged = {'text': None, 'at': 0.0, 'repeats': 0}
_config = {'problems': ()}  # what was last reported about the config hash


def log_limited(text, level='warning'):
    """Log `text`, but the same text again only after LOG_REPEAT_S, with how often it repeated meanwhile."""
    now = time.time()
    if text == _logged['text'] and now - _logged['at'] < LOG_REPEAT_S:
        _logged['repeats'] += 1
        return
    repeats = _logged['repeats'] if text == _logged['text'] else 0
    _logged.update(text=text, at=now, repeats=0)
    log(text + (' (and %d more times since it was last logged)' % repeats if repeats else ''), level=level)


def report_config(problems):
    """A bad config value, reported once per change of the problems (not per frame); nothing is dropped."""
    problems = tuple(problems)
    if problems == _config['problems']:
        return
    _config['problems'] = problems
    message = ('bad value in %s: %s (fix: HSET %s <field> <value>)'
               % (CONFIG_KEY, '; '.join(problems), CONFIG_KEY)) if problems else ''
    # Several workers may see the same change: SET ... GET lets exactly one of them report it.
    if _text(execute('SET', CONFIG_REPORTED_KEY, message, 'GET') or '') == message:
        return
    if not problems:
        execute('HDEL', STATS_KEY, 'config_error')
        log('gearcam: %s is valid again' % CONFIG_KEY, level='notice')
        return
    execute('HINCRBY', ERRORS_KEY, 'config', '1')
    execute('HINCRBY', STATS_KEY, 'errors', '1')
    execute('HSET', STATS_KEY, 'config_error', message, 'last_error', message,
            'last_error_ms', str(int(time.time() * 1000)))
    log('gearcam: ' + message, level='warning')


def model_error(model_key, exc):
    """The model run failed; a missing model says how to store it."""
    detail = 'model %s failed: %s: %s' % (model_key, type(exc).__name__, exc)
    if any(sign in str(exc).lower() for sign in MODEL_MISSING):
        detail += '; store the model with `invoke upload` (or run the loader)'
    return FrameError('model', detail)


def count_error(rec, error):
    where = '%s %s' % (rec.get('key'), rec.get('id'))
    message = '%s: %s (%s)' % (error.reason, error.detail, where)
    try:
        execute('HINCRBY', ERRORS_KEY, error.reason, '1')
        execute('HINCRBY', STATS_KEY, 'errors', '1')
        if rec.get('key'):
            execute('HINCRBY', CAMERA_STATS_PREFIX + rec['key'], 'errors', '1')
        execute('HSET', STATS_KEY, 'last_error', message, 'last_error_ms', str(int(time.time() * 1000)))
    finally:
        log_limited('gearcam: frame dropped, %s: %s' % (error.reason, error.detail))


def receive(rec):
    """Step 1+2: parameters, checks, and the copy to `all`. Returns the record to go on with, or None."""
    out = {'key': _text(rec['key']), 'id': _text(rec['id']), 'value': rec.get('value') or {}}
    try:
        execute('HINCRBY', STATS_KEY, 'seen', '1')
        params, problems = parse_config(execute('HGETALL', CONFIG_KEY))
        out['params'] = params
        report_config(problems)
        img = out['value'].get('img')
        check_frame(img, params['max_frame_bytes'])
        out['img'] = img
        execute('XADD', ALL_STREAM, 'MAXLEN', '~', str(params['stream_maxlen']), '*',
                'img', img, 'source', out['key'], 'ref', out['id'])
        execute('HINCRBY', STATS_KEY, 'forwarded', '1')
        out['frame'] = execute('HINCRBY', CAMERA_STATS_PREFIX + out['key'], 'frames', '1')
        return out
    except FrameError as error:
        count_error(out, error)
    except Exception as exc:
        count_error(out, FrameError('fanout', '%s: %s' % (type(exc).__name__, exc)))
    return None


def sampled(rec):
    """Step 3: every Nth frame of its camera stream (the Nth, 2Nth, ...)."""
    if rec is None:
        return False
    if int(rec['frame']) % rec['params']['sample_every'] != 0:
        return False
    execute('HINCRBY', STATS_KEY, 'sampled', '1')
    execute('HINCRBY', CAMERA_STATS_PREFIX + rec['key'], 'sampled', '1')
    return True


def decode(rec):
    """Step 4: the model's input tensor, or None when the frame does not decode."""
    try:
        rec['tensor'] = preprocess(rec['img'])
        return rec
    except FrameError as error:
        count_error(rec, error)
    except Exception as exc:
        count_error(rec, FrameError('decode', '%s: %s' % (type(exc).__name__, exc)))
    return None


async def classify(rec):
    """Step 5: one model run through redisAI, awaited so that Redis goes on serving meanwhile."""
    if rec is None:
        return None
    params = rec['params']
    try:
        tensor = redisAI.createTensorFromBlob('FLOAT', list(rec['tensor'].shape), rec['tensor'].tobytes())
        runner = redisAI.createModelRunner(params['model_key'])
        redisAI.modelRunnerAddInput(runner, params['model_input'], tensor)
        redisAI.modelRunnerAddOutput(runner, params['model_output'])
        started = time.time()
        outputs = await redisAI.modelRunnerRunAsync(runner)
        rec['ms'] = (time.time() - started) * 1000.0
        blob = redisAI.tensorGetDataAsBlob(outputs[0])
        rec['class'], rec['score'] = top_class(np.frombuffer(blob, dtype=np.float32))
    except Exception as exc:
        rec['error'] = model_error(params['model_key'], exc)
    del rec['tensor']
    return rec


def is_hit(rec):
    """Step 6a: count the run, and keep target classes at or above the threshold."""
    if rec is None:
        return False
    if 'error' in rec:
        count_error(rec, rec['error'])
        return False
    execute('HINCRBY', STATS_KEY, 'inferred', '1')
    execute('HINCRBY', CAMERA_STATS_PREFIX + rec['key'], 'inferred', '1')
    execute('HSET', STATS_KEY, 'last_ms', '%.1f' % rec['ms'], 'last_class', str(rec['class']),
            'last_score', '%.4f' % rec['score'])
    params = rec['params']
    return rec['class'] in params['target_classes'] and rec['score'] >= params['threshold']


def publish(rec):
    """Step 6b: XADD the hit, with its label, to the hits stream.

    Returns a small summary, not the record: RedisGears keeps the last results of every
    registered execution (MaxExecutionsPerRegistration), and a frame there would pin its JPEG.
    """
    params = rec['params']
    try:
        label = execute('LINDEX', params['labels_key'], str(rec['class']))
        label = _text(label) if label is not None else 'class %d' % rec['class']
        execute('XADD', params['hits_stream'], 'MAXLEN', '~', str(params['stream_maxlen']), '*',
                'img', rec['img'], 'source', rec['key'], 'ref', rec['id'], 'label', label,
                'class', str(rec['class']), 'score', '%.4f' % rec['score'], 'ms', '%.1f' % rec['ms'])
        execute('HINCRBY', STATS_KEY, 'hits', '1')
        execute('HINCRBY', CAMERA_STATS_PREFIX + rec['key'], 'hits', '1')
    except Exception as exc:
        count_error(rec, FrameError('publish', '%s: %s' % (type(exc).__name__, exc)))
    return {'source': rec['key'], 'ref': rec['id'], 'class': rec['class'], 'score': rec['score']}


# A StreamReader runs one batch at a time per stream, so with one frame per run the pipeline's
# rate is one over a frame's latency. Up to BATCH frames per run (or whatever arrived within
# DURATION_MS) overlap their model runs, which RedisAI's auto-batching then merges: measured
# on 2 cores (`invoke bench`), 1.5x the frames/s of batch=1 for ~30 ms more latency at low rates.
BATCH = 8
DURATION_MS = 10


def register():
    """The one registration: every camera stream, in small batches, failures counted and skipped."""
    builder = GB('StreamReader', desc=DESCRIPTION)
    builder.map(receive).filter(sampled).map(decode).map(classify).filter(is_hit).map(publish)
    builder.register(prefix='camera:*', batch=BATCH, duration=DURATION_MS, mode='async', onFailedPolicy='continue',
                     trimStream=False, convertToStr=False, collect=False)


try:
    GB  # RedisGears provides it (as a global or a builtin)
except NameError:  # a plain import (the tests) only gets the functions above
    pass
else:
    register()
