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
#   3. keep every Nth frame of each camera stream (sample_every, or the interval adaptive sampling
#      raised it to when a latency budget is set; counted in Redis, so the count survives an
#      upgrade and is shared by every worker), and with motion gating on only frames with motion;
# Counters: gearcam:stats:pipeline (seen, forwarded, sampled, inferred, hits, errors, last_error,
# last_ms), gearcam:stats:errors (reason -> count), and per camera gearcam:stats:camera:<n>
# (frames, sampled, inferred, hits, errors).
#   4. decode (a JPEG of 1024 pixels or more on its shorter side at 1/2, 1/4 or 1/8 scale, by the
#      decoder itself), resize the shorter side to 256 and centre-crop 224 in one step (only the
#      crop's region is resized), (x - 127) / 128, NHWC float32;
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

import asyncio
import hashlib
import io
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

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
EVENTS_STREAM = 'events'
EVENTS_OPEN_KEY = 'gearcam:events:open'  # hash: open event id -> deadline (ms): its last hit + event_gap_s
EVENT_KEY_PREFIX = 'gearcam:event:'  # hash per open event: its fields (docs/pipeline.md)
EVENT_CURRENT_KEY = 'gearcam:events:current'  # hash: '<camera>|<label>' -> id of its latest event
ADAPT_INTERVAL_KEY = 'gearcam:adapt:interval'  # hash: camera -> sampling interval raised over its sample_every
ADAPT_SAMPLES_KEY = 'gearcam:adapt:samples'  # list, newest first: '<ms> <latency ms> <camera>' per model run
ADAPT_TICK_KEY = 'gearcam:adapt:tick'  # SET NX PX <window>: one decision per window, whichever worker wins
ADAPT_LOAD_KEY = 'gearcam:adapt:load'  # hash: camera -> frames it sampled since the last decision
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
    # motion gating (docs/pipeline.md): off unless the config hash (or a camera's) turns it on
    'motion': False,
    'motion_threshold': 25,
    'min_area': 500,
    'infer_every_s': 10.0,
    'motion_mask': (),
    'event_gap_s': 10.0,
    # adaptive sampling (docs/pipeline.md): off unless latency_budget_ms > 0
    'latency_budget_ms': 0,
    'latency_window_s': 5.0,
    'max_sample_every': 64,
}
DEFAULT_SHOWN = {'target_classes': '281-285', 'motion_mask': "''"}
MODEL_MISSING = ('key is empty', 'does not exist', 'not found', 'wrongtype')
LOG_REPEAT_S = 60  # the same failure is logged at most once a minute
MAX_PIXELS = 40 * 1000 * 1000  # a frame that decodes to more than this is refused before decoding
RESIZE = 256
REDUCING_GAP = 2  # a JPEG is decoded at no less than twice RESIZE (see reduced_size)
CROP = 224
MEAN = 127.0
SCALE = 128.0
# Pillow >= 9.1 names its filters in Image.Resampling; older ones (the Jetson's) on Image.
BILINEAR = getattr(getattr(Image, 'Resampling', Image), 'BILINEAR')
MOTION_WIDTH = 96  # the background's width in pixels; its height follows the frame's aspect
MOTION_ALPHA = 0.3  # share of each new frame in a camera's running-average background
MOTION_BLUR = 1.5  # Gaussian blur radius (background pixels): sensor noise and JPEG blocks are not motion
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
    'motion': lambda v: parse_bool(v),
    'motion_threshold': lambda v: _bounded(int(v), 1, 255),
    'min_area': lambda v: _bounded(int(v), 0, None),
    'infer_every_s': lambda v: _bounded(float(v), 0.0, None),
    'motion_mask': lambda v: parse_polygons(v),
    'event_gap_s': lambda v: _bounded(float(v), 0.001, None),
    'latency_budget_ms': lambda v: _bounded(int(v), 0, None),
    'latency_window_s': lambda v: _bounded(float(v), 0.1, None),
    'max_sample_every': lambda v: _bounded(int(v), 1, None),
}
TRUE_WORDS = ('1', 'true', 'yes', 'on')
FALSE_WORDS = ('0', 'false', 'no', 'off', '')


def parse_bool(text):
    word = _text(text).strip().lower()
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    raise ValueError('not one of %s' % '/'.join(TRUE_WORDS + FALSE_WORDS[:-1]))


def parse_polygons(text):
    """'x,y x,y x,y; x,y ...' (frame pixels, polygons split by ';') -> tuple of point tuples."""
    polygons = []
    for part in _text(text).split(';'):
        if not part.strip():
            continue
        points = []
        for pair in part.split():
            x, _, y = pair.partition(',')
            points.append((float(x), float(y)))
        if len(points) < 3:
            raise ValueError('polygon %r has %d points, needs 3 or more' % (part.strip(), len(points)))
        polygons.append(tuple(points))
    return tuple(polygons)


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


def parse_config(reply, base=None):
    """The config hash (HGETALL reply) over ``base`` (the defaults), and the problems found.

    A bad field keeps the value it had in ``base``: a camera's hash (gearcam:config:<camera>) is
    parsed over the global one, so a bad camera value falls back to the global value.
    """
    params = dict(DEFAULTS if base is None else base)
    problems = []
    for name, raw in _pairs(reply):
        parse = _PARSERS.get(name)
        if parse is None:
            continue  # other fields are for other readers
        try:
            params[name] = parse(_text(raw))
        except (ValueError, TypeError) as exc:
            if base is None:
                shown = '%s (the default)' % DEFAULT_SHOWN.get(name, DEFAULTS[name])
            else:
                shown = '%s (the global value)' % (_shown(params[name]),)
            problems.append('%s=%s: %s; using %s until it is fixed' % (name, _text(raw) or "''", exc, shown))
    return params, problems


def _shown(value):
    if isinstance(value, frozenset):
        return ','.join(str(v) for v in sorted(value))
    return "''" if value == () else str(value)


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
        image.draft('RGB', reduced_size(width, height))
        image.load()
        rgb = image if image.mode == 'RGB' else image.convert('RGB')  # convert() copies even an RGB image
    except FrameError:
        raise
    except Exception as exc:  # Pillow raises OSError, ValueError, SyntaxError... for broken data
        raise FrameError('decode', 'cannot decode %d bytes: %s' % (len(img), exc))
    width, height = rgb.size
    if width <= height:
        size = (RESIZE, int(RESIZE * height / width))
    else:
        size = (int(RESIZE * width / height), RESIZE)
    left = int(round((size[0] - CROP) / 2.0))
    top = int(round((size[1] - CROP) / 2.0))
    if min(width, height) == RESIZE:
        rgb = rgb.crop((left, top, left + CROP, top + CROP))
    else:  # only the crop's part of the frame is resized: see crop_box
        rgb = rgb.resize((CROP, CROP), BILINEAR, box=crop_box(width, height, size, left, top))
    pixels = np.asarray(rgb, dtype=np.float32)  # a new array: normalised in place, no more copies
    pixels -= MEAN
    pixels /= SCALE
    return pixels[np.newaxis]


def crop_box(width, height, size, left, top):
    """The frame's region that becomes the centre crop once the frame is resized to ``size``.

    Resizing that region alone to CROP x CROP (Pillow's ``box``) samples the frame at the same
    points, with the same filter, as resizing all of it and cropping, for about half the work
    (1.0 against 1.8 ms for a 640x480 frame); rounding differs by one grey level at most (0.15
    on average for a portrait frame, far less for a landscape one).
    """
    scale_x, scale_y = width / float(size[0]), height / float(size[1])
    return left * scale_x, top * scale_y, (left + CROP) * scale_x, (top + CROP) * scale_y


def reduced_size(width, height):
    """The least size a frame is decoded at, for Pillow's draft mode: shorter side REDUCING_GAP x RESIZE.

    A JPEG decoder can scale by 1/2, 1/4 or 1/8 while it decodes (in the DCT), at a fraction of
    a full decode's cost: a 1920x1080 frame decodes as 960x540 in under half the time, a 4K one
    in a fifth. Kept at least twice the resize's size, as Pillow's thumbnail() does, so the
    antialiased resize below still makes the last step and the tensor is within a grey level of
    a full decode's on average; frames under 1024 pixels on the shorter side decode as before.
    Other formats ignore draft mode.
    """
    short = min(width, height)
    least = REDUCING_GAP * RESIZE
    return max(1, width * least // short), max(1, height * least // short)


def top_class(logits):
    """(class index, softmax score) of the best class in a [1, C] logits vector."""
    values = np.asarray(logits, dtype=np.float64).reshape(-1)
    exp = np.exp(values - values.max())
    probs = exp / exp.sum()
    best = int(probs.argmax())
    return best, float(probs[best])


# -- motion ----------------------------------------------------------------------------------------

def small_gray(img, width=MOTION_WIDTH):
    """Encoded frame -> (blurred grayscale float32 array ``width`` wide, (frame width, frame height)).

    JPEGs are decoded at a reduced scale (Pillow's draft mode: the DCT scales by 1/2..1/8), so a
    640x480 frame costs a fraction of a full decode.
    """
    image = Image.open(io.BytesIO(img))
    frame_w, frame_h = image.size
    if frame_w * frame_h > MAX_PIXELS:
        raise FrameError('too_large', 'frame is %dx%d pixels, over %d' % (frame_w, frame_h, MAX_PIXELS))
    height = max(1, int(round(width * frame_h / float(frame_w))))
    image.draft('L', (width, height))
    gray = image.convert('L').resize((width, height), BILINEAR).filter(ImageFilter.GaussianBlur(MOTION_BLUR))
    return np.asarray(gray, dtype=np.float32), (frame_w, frame_h)


def mask_keep(polygons, frame_size, shape):
    """Boolean array of ``shape``: False inside the mask polygons (given in frame pixels), or None."""
    if not polygons:
        return None
    height, width = shape
    sx, sy = width / float(frame_size[0]), height / float(frame_size[1])
    canvas = Image.new('L', (width, height), 1)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        draw.polygon([(x * sx, y * sy) for x, y in polygon], fill=0)
    return np.asarray(canvas, dtype=np.uint8).astype(bool)


def motion_area(state, gray, frame_size, params):
    """Frame pixels that changed against the camera's background, which then follows the frame.

    ``state`` is the camera's (a dict kept by the caller). None when there was no background yet
    (the first frame, or the frame size changed): that counts as motion.
    """
    background = state.get('background')
    if background is None or background.shape != gray.shape or state.get('size') != frame_size:
        state['background'], state['size'] = gray, frame_size
        return None
    changed = np.abs(gray - background) > params['motion_threshold']
    mask_id = (params['motion_mask'], frame_size, gray.shape)
    if state.get('mask_id') != mask_id:
        state['mask_id'], state['keep'] = mask_id, mask_keep(params['motion_mask'], frame_size, gray.shape)
    if state['keep'] is not None:
        changed &= state['keep']
    state['background'] = background * (1.0 - MOTION_ALPHA) + gray * MOTION_ALPHA
    return int(changed.sum() * (frame_size[0] * frame_size[1] / float(gray.size)))


def gate(state, moved, is_sampled, now, params):
    """Whether a frame goes to the model: sampled, and motion since the last sampled frame or the floor due.

    Returns (infer, reason) with reason 'motion', 'floor' or 'still' (skipped); 'off' when gating is off.
    """
    if not params['motion']:
        return is_sampled, 'off'
    if moved:
        state['pending'] = True
    if not is_sampled:
        return False, 'still'
    floor = params['infer_every_s']
    if state.get('pending'):
        reason = 'motion'
    elif floor > 0 and now - state.get('last_infer', 0.0) >= floor:
        reason = 'floor'
    else:
        return False, 'still'
    state['pending'] = False
    state['last_infer'] = now
    return True, reason


# -- Redis side (only inside RedisGears: execute, log and redisAI exist there) -----------------------

CACHE_S = 0.25  # what a worker reads again at most this often, not per frame (intervals, labels, open events)
_logged = {'text': None, 'at': 0.0, 'repeats': 0}


def cached(store, key, read):
    """store[key]'s value, from read() again once it is CACHE_S old: this worker's copy of what Redis holds."""
    now = time.time()
    entry = store.get(key)
    if entry is None or now >= entry[1]:
        entry = (read(), now + CACHE_S)
        store[key] = entry
    return entry[0]


_config = {}  # config hash -> the problems last reported about it
_cameras = {}  # camera stream -> its motion state (background, pending motion, last inference time)


def log_limited(text, level='warning'):
    """Log `text`, but the same text again only after LOG_REPEAT_S, with how often it repeated meanwhile."""
    now = time.time()
    if text == _logged['text'] and now - _logged['at'] < LOG_REPEAT_S:
        _logged['repeats'] += 1
        return
    repeats = _logged['repeats'] if text == _logged['text'] else 0
    _logged.update(text=text, at=now, repeats=0)
    log(text + (' (and %d more times since it was last logged)' % repeats if repeats else ''), level=level)


def report_config(problems, config_key=CONFIG_KEY, stats_key=STATS_KEY):
    """A bad config value, reported once per change of the problems (not per frame); nothing is dropped.

    Each hash is tracked on its own (the global one in the pipeline counters, a camera's
    gearcam:config:<camera> in that camera's), so two cameras never take turns re-reporting.
    """
    problems = tuple(problems)
    if problems == _config.get(config_key, ()):
        return
    _config[config_key] = problems
    message = ('bad value in %s: %s (fix: HSET %s <field> <value>)'
               % (config_key, '; '.join(problems), config_key)) if problems else ''
    reported_key = CONFIG_REPORTED_KEY if config_key == CONFIG_KEY else CONFIG_REPORTED_KEY + ':' + config_key
    # Several workers may see the same change: SET ... GET lets exactly one of them report it.
    if _text(execute('SET', reported_key, message, 'GET') or '') == message:
        return
    if not problems:
        execute('HDEL', stats_key, 'config_error')
        log('gearcam: %s is valid again' % config_key, level='notice')
        return
    execute('HINCRBY', ERRORS_KEY, 'config', '1')
    execute('HINCRBY', STATS_KEY, 'errors', '1')
    execute('HSET', stats_key, 'config_error', message, 'last_error', message,
            'last_error_ms', str(int(time.time() * 1000)))
    log('gearcam: ' + message, level='warning')


def camera_params(camera):
    """The global config hash, then the camera's own (gearcam:config:<camera stream>) over it."""
    params, problems = parse_config(execute('HGETALL', CONFIG_KEY))
    report_config(problems)
    override = execute('HGETALL', CONFIG_KEY + ':' + camera)
    if override or _config.get(CONFIG_KEY + ':' + camera):
        params, problems = parse_config(override, base=params)
        report_config(problems, CONFIG_KEY + ':' + camera, CAMERA_STATS_PREFIX + camera)
    return params


def model_error(model_key, exc):
    """The model run failed; a missing model says how to store it."""
    detail = 'model %s failed: %s: %s' % (model_key, type(exc).__name__, exc)
    if any(sign in str(exc).lower() for sign in MODEL_MISSING):
        detail += '; store the model with `invoke upload` (or run the loader)'
    return FrameError('model', detail)


# -- counters --------------------------------------------------------------------------------------
# A frame's counters are gathered on its record (count()) and written when it leaves the pipeline
# (flush(): at the copy to `all`, then where it is dropped or published), all of them in one round
# trip: a small Lua script doing the HINCRBYs and HSETs. That is 2 round trips a frame instead of
# about 12, which the Gears lane spent most of its time waiting on. Where scripts are not allowed
# (an ACL user without +@scripting), each counter is written on its own, as before.
STATS_LUA = '''local out = {}
for i = 1, #ARGV, 4 do
  local key = KEYS[tonumber(ARGV[i + 1])]
  if ARGV[i] == 'i' then
    out[#out + 1] = redis.call('HINCRBY', key, ARGV[i + 2], ARGV[i + 3])
  else
    redis.call('HSET', key, ARGV[i + 2], ARGV[i + 3])
    out[#out + 1] = 0
  end
end
return out'''
STATS_SHA = hashlib.sha1(STATS_LUA.encode()).hexdigest()
_stats_script = {'usable': True}


def count(rec, field, key=STATS_KEY, value='1', op='i'):
    """Add to one of the frame's counters (op 'i': HINCRBY) or set a field (op 's': HSET), written by flush()."""
    rec.setdefault('tally', []).append((op, key, field, value))


def count_camera(rec, field):
    """The same counter in the pipeline's hash and in the frame's camera's."""
    count(rec, field)
    count(rec, field, CAMERA_STATS_PREFIX + rec['key'])


def write_stats(ops):
    """Apply (op, key, field, value) to the stats hashes in one round trip; each op's reply, in order."""
    if not ops:
        return []
    keys = sorted(set(op[1] for op in ops))
    if _stats_script['usable']:
        args = []
        for op, key, field, value in ops:
            args += [op, str(keys.index(key) + 1), field, value]
        try:
            try:
                return execute('EVALSHA', STATS_SHA, str(len(keys)), *(keys + args))
            except Exception as exc:
                if 'NOSCRIPT' not in str(exc):
                    raise
                return execute('EVAL', STATS_LUA, str(len(keys)), *(keys + args))
        except Exception as exc:
            if not any(sign in str(exc) for sign in ('NOPERM', 'unknown command', 'not allowed')):
                raise
            _stats_script['usable'] = False
            log('gearcam: counters are written one by one (%s); allow +evalsha +eval to save round trips' % exc,
                level='notice')
    return [execute('HINCRBY' if op == 'i' else 'HSET', key, field, value) for op, key, field, value in ops]


def flush(rec):
    """Write the frame's gathered counters; the replies, in the order they were counted."""
    return write_stats(rec.pop('tally', None) or [])


def count_error(rec, error):
    where = '%s %s' % (rec.get('key'), rec.get('id'))
    message = '%s: %s (%s)' % (error.reason, error.detail, where)
    try:
        count(rec, error.reason, ERRORS_KEY)
        count(rec, 'errors')
        if rec.get('key'):
            count(rec, 'errors', CAMERA_STATS_PREFIX + rec['key'])
        count(rec, 'last_error', value=message, op='s')
        count(rec, 'last_error_ms', value=str(int(time.time() * 1000)), op='s')
        flush(rec)
    finally:
        log_limited('gearcam: frame dropped, %s: %s' % (error.reason, error.detail))


def receive(rec):
    """Step 1+2: parameters, checks, and the copy to `all`. Returns the record to go on with, or None."""
    out = {'key': _text(rec['key']), 'id': _text(rec['id']), 'value': rec.get('value') or {}}
    count(out, 'seen')
    try:
        params = camera_params(out['key'])
        out['params'] = params
        check_events(out)
        img = out['value'].get('img')
        check_frame(img, params['max_frame_bytes'])
        out['img'] = img
        execute('XADD', ALL_STREAM, 'MAXLEN', '~', str(params['stream_maxlen']), '*',
                'img', img, 'source', out['key'], 'ref', out['id'])
        count(out, 'forwarded')
        count(out, 'frames', CAMERA_STATS_PREFIX + out['key'])
        out['frame'] = flush(out)[-1]
        return out
    except FrameError as error:
        count_error(out, error)
    except Exception as exc:
        count_error(out, FrameError('fanout', '%s: %s' % (type(exc).__name__, exc)))
    return None


def moved(rec, state):
    """Whether the frame shows motion against its camera's background (counted as `motion`)."""
    try:
        gray, size = small_gray(rec['img'])
    except Exception:  # not decodable: let classify() report it, on the frames that are sampled
        return True
    area = motion_area(state, gray, size, rec['params'])
    if area is not None and area < rec['params']['min_area']:
        return False
    count_camera(rec, 'motion')
    return True


def sampled(rec):
    """Step 3: every Nth frame of its camera stream (the Nth, 2Nth, ...), gated by motion when that is on.

    With gating on, every frame updates the camera's background; a sampled frame goes to the model
    when some frame since the previous sampled one moved, or when the camera's last inference is
    `infer_every_s` old (the floor: a still cat is still seen). The others are counted as `still`.
    """
    if rec is None:
        return False
    params = rec['params']
    state = _cameras.setdefault(rec['key'], {})
    motion = moved(rec, state) if params['motion'] else False
    try:
        interval = sample_interval(rec)
        adapt(rec)
    except Exception as exc:  # adaptive sampling failed: counted, the frame goes on at sample_every
        interval = params['sample_every']
        count_error(rec, FrameError('adapt', '%s: %s' % (type(exc).__name__, exc)))
    is_sampled = int(rec['frame']) % interval == 0
    infer, reason = gate(state, motion, is_sampled, time.time(), params)
    if is_sampled:
        count_camera(rec, 'sampled')
        if params['latency_budget_ms'] > 0:  # the load it offers the model, for adaptive sampling
            count(rec, rec['key'], ADAPT_LOAD_KEY)
    if is_sampled and reason in ('still', 'floor'):
        count_camera(rec, reason)
    if not infer:
        flush(rec)
    return infer


# Decoding runs on a few threads of its own (Pillow and numpy release the GIL while they work), so
# the frames of one batch decode side by side while earlier ones are in the model: one execution's
# steps run on one thread, and decoding on that thread left a second core idle whenever the model
# waited for the next frame.
DECODE_THREADS = 2
_decoders = {}


def decoders():
    """This worker's decode threads, started on first use (never at import: the tests import this file)."""
    if 'pool' not in _decoders:
        _decoders['pool'] = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix='gearcam-decode')
    return _decoders['pool']


def stop_decoders():
    """onUnregistered: the decode threads end with the registration (an UPGRADE starts its own)."""
    pool = _decoders.pop('pool', None)
    if pool is not None:
        pool.shutdown(wait=False)


async def classify(rec):
    """Steps 4 and 5: decode on a decode thread, then one model run through redisAI, both awaited.

    Awaited, so the execution goes on with its next frames meanwhile. A failure is kept on the
    record (`error`) and counted by is_hit(): Redis is only called from plain steps.
    """
    params = rec['params']
    try:
        rec['tensor'] = await asyncio.get_event_loop().run_in_executor(decoders(), preprocess, rec['img'])
    except FrameError as error:
        rec['error'] = error
        return rec
    except Exception as exc:
        rec['error'] = FrameError('decode', '%s: %s' % (type(exc).__name__, exc))
        return rec
    try:
        # The array itself, not tobytes(): RedisGears copies a buffer into the tensor once
        tensor = redisAI.createTensorFromBlob('FLOAT', list(rec['tensor'].shape), rec['tensor'])
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
    if 'error' in rec:
        count_error(rec, rec['error'])
        return False
    count_camera(rec, 'inferred')
    count(rec, 'last_ms', value='%.1f' % rec['ms'], op='s')
    count(rec, 'last_class', value=str(rec['class']), op='s')
    count(rec, 'last_score', value='%.4f' % rec['score'], op='s')
    try:
        record_latency(rec)
    except Exception as exc:
        count_error(rec, FrameError('adapt', '%s: %s' % (type(exc).__name__, exc)))
    params = rec['params']
    hit = rec['class'] in params['target_classes'] and rec['score'] >= params['threshold']
    if not hit:
        flush(rec)
    return hit


_labels = {}  # (labels key, class) -> (its label, when to read it again)
_events_next = {'at': 0.0}  # when this worker next checks the open events' deadlines


def class_label(labels_key, index):
    """The class's label from the labels list (`class N` without one), read again after CACHE_S."""
    def read():
        label = execute('LINDEX', labels_key, str(index))
        return _text(label) if label is not None else 'class %d' % index

    if len(_labels) > 4096:  # a labels key per camera is a handful of lists, not a leak
        _labels.clear()
    return cached(_labels, (labels_key, index), read)


def publish(rec):
    """Step 6b: XADD the hit, with its label, to the hits stream.

    Returns a small summary, not the record: RedisGears keeps the last results of every
    registered execution (MaxExecutionsPerRegistration), and a frame there would pin its JPEG.
    """
    params = rec['params']
    try:
        label = class_label(params['labels_key'], rec['class'])
        hit_id = execute('XADD', params['hits_stream'], 'MAXLEN', '~', str(params['stream_maxlen']), '*',
                         'img', rec['img'], 'source', rec['key'], 'ref', rec['id'], 'label', label,
                         'class', str(rec['class']), 'score', '%.4f' % rec['score'], 'ms', '%.1f' % rec['ms'])
        count_camera(rec, 'hits')
        flush(rec)
    except Exception as exc:
        count_error(rec, FrameError('publish', '%s: %s' % (type(exc).__name__, exc)))
    else:
        try:
            track_event(rec, label, _text(hit_id), int(time.time() * 1000))
        except Exception as exc:
            count_error(rec, FrameError('events', '%s: %s' % (type(exc).__name__, exc)))
    return {'source': rec['key'], 'ref': rec['id'], 'class': rec['class'], 'score': rec['score']}


# -- events ----------------------------------------------------------------------------------------
# Consecutive hits of one label on one camera form an event: `new` at the first hit, `update` when
# a hit scores better (its hits entry becomes the snapshot), `end` once no hit came for
# event_gap_s. State lives in Redis (it survives restarts and upgrades of the script). Every
# transition of an open event first claims it with HDEL on EVENTS_OPEN_KEY (the event id is the
# field, unique), so a hit and an ending check racing on it never both act: only the one whose
# HDEL returned 1 goes on. Ends are checked on every frame of every camera (see docs/pipeline.md).

def _event_fields(kind, state, end=''):
    return ['type', kind, 'id', state['id'], 'camera', state['camera'], 'label', state['label'],
            'class', state['class'], 'score', state['score'], 'start', state['start'], 'end', end,
            'snapshot', state['snapshot'], 'stream', state['stream']]


def _append_event(kind, state, maxlen, end=''):
    execute('XADD', EVENTS_STREAM, 'MAXLEN', '~', str(maxlen), '*', *_event_fields(kind, state, end))
    execute('HINCRBY', STATS_KEY, 'events_' + kind, '1')


def _end_event(event_id, maxlen):
    """End a claimed event (its EVENTS_OPEN_KEY field already deleted by the caller)."""
    key = EVENT_KEY_PREFIX + event_id
    state = dict((name, _text(value)) for name, value in _pairs(execute('HGETALL', key)))
    if state.get('id'):
        _append_event('end', state, maxlen, end=state.get('last', ''))
    execute('DEL', key)


def end_stale_events(now_ms, maxlen):
    """End every open event whose deadline passed, whichever camera it is on."""
    for event_id, deadline in _pairs(execute('HGETALL', EVENTS_OPEN_KEY)):
        if int(_text(deadline)) < now_ms and int(execute('HDEL', EVENTS_OPEN_KEY, event_id)) == 1:
            _end_event(event_id, maxlen)


def track_event(rec, label, hit_id, now_ms):
    """A hit joins its camera's open event of that label (update if better), or opens a new one."""
    params = rec['params']
    maxlen = params['stream_maxlen']
    gap_ms = int(params['event_gap_s'] * 1000)
    field = '%s|%s' % (rec['key'], label)
    score = '%.4f' % rec['score']
    event_id = _text(execute('HGET', EVENT_CURRENT_KEY, field) or '')
    deadline = execute('HGET', EVENTS_OPEN_KEY, event_id) if event_id else None
    if deadline is not None and int(execute('HDEL', EVENTS_OPEN_KEY, event_id)) == 1:
        if int(_text(deadline)) >= now_ms:
            key = EVENT_KEY_PREFIX + event_id
            state = dict((name, _text(value)) for name, value in _pairs(execute('HGETALL', key)))
            execute('HSET', key, 'last', str(now_ms))
            # Compared as stored (4 decimals): the same frame again is no better, whichever way it rounds.
            if state.get('id') and float(score) > float(state.get('score') or 0):
                state.update({'score': score, 'class': str(rec['class']), 'snapshot': hit_id})
                execute('HSET', key, 'score', score, 'class', state['class'], 'snapshot', hit_id)
                _append_event('update', state, maxlen)
            execute('HSET', EVENTS_OPEN_KEY, event_id, str(now_ms + gap_ms))
            return
        _end_event(event_id, maxlen)
    state = {'id': hit_id, 'camera': rec['key'], 'label': label, 'class': str(rec['class']), 'score': score,
             'start': str(now_ms), 'last': str(now_ms), 'snapshot': hit_id, 'stream': params['hits_stream']}
    execute('HSET', EVENT_KEY_PREFIX + hit_id, *[x for name in sorted(state) for x in (name, state[name])])
    execute('HSET', EVENT_CURRENT_KEY, field, hit_id)
    _append_event('new', state, maxlen)
    execute('HSET', EVENTS_OPEN_KEY, hit_id, str(now_ms + gap_ms))


def check_events(rec):
    """End the events that had no hit for event_gap_s (errors are counted, the frame goes on).

    Checked on a frame of any camera, at most every CACHE_S per worker: an event ends within
    CACHE_S of its deadline, and a frame costs no round trip for it.
    """
    now = time.time()
    if now < _events_next['at']:
        return
    _events_next['at'] = now + CACHE_S
    try:
        end_stale_events(int(now * 1000), rec['params']['stream_maxlen'])
    except Exception as exc:
        count_error(rec, FrameError('events', '%s: %s' % (type(exc).__name__, exc)))


# -- adaptive sampling -----------------------------------------------------------------------------
# Keeps the pipeline inside a latency budget instead of falling behind. Every model run records
# its camera-to-result latency (from the frame's arrival in its camera stream, the entry id's time
# on Redis' clock, to its result). Once per latency_window_s (one worker claims the window with
# SET NX PX) the p99 of each camera's runs in that window is compared with its latency_budget_ms:
# over it, the busiest cameras (at least their share of the frames sampled in the window: the
# load they offer, not the runs that finished, which a backlog evens out) get their sampling
# interval doubled, up to max_sample_every; with every camera under half its budget, the camera
# raised most is halved back towards its sample_every. One step per window, so it settles instead
# of swinging. The interval lives in Redis (gearcam:adapt:interval) and is read on every frame;
# each decision is counted (adapt_raise, adapt_lower, adapt_max) and its reason kept per camera.
ADAPT_KEEP = 4000  # latency samples kept (newest first): a window's worth at a few hundred runs/s
ADAPT_MIN_RUNS = 3  # fewer runs than this in a window never raise an interval
ADAPT_HEADROOM = 0.5  # every camera's p99 under this share of its budget lowers an interval
_intervals = {}  # camera -> (its raised interval or None, when to read it again): this worker's copy
_adapt_next = {'at': 0.0}  # when this worker may next try to claim a decision window


def p99(values):
    return float(np.percentile(np.asarray(values, dtype=np.float64), 99)) if values else 0.0


def adapt_decisions(samples, cameras, intervals, loads, now_ms):
    """What to change, from the latency samples of the last window.

    ``samples``: (ms, latency ms, camera) of recent model runs; ``cameras``: camera -> its params,
    for the cameras with a budget (latency_budget_ms > 0); ``intervals``: camera -> its current
    interval; ``loads``: camera -> frames it had sampled in the window. Returns
    [(camera, new interval, decision, reason)], decision 'raise', 'lower' or 'max'.
    """
    recent = dict((camera, []) for camera in cameras)
    for at, latency, camera in samples:
        if camera in cameras and now_ms - at <= cameras[camera]['latency_window_s'] * 1000:
            recent[camera].append(latency)
    if not recent:
        return []
    p99s = dict((camera, p99(runs)) for camera, runs in recent.items())
    over = [camera for camera, runs in recent.items()
            if len(runs) >= ADAPT_MIN_RUNS and p99s[camera] > cameras[camera]['latency_budget_ms']]
    if over:
        worst = max(over, key=lambda camera: p99s[camera] / cameras[camera]['latency_budget_ms'])
        total = sum(loads.get(camera, 0) for camera in recent)
        why = ('p99 %d ms on %s over its budget %d ms' % (p99s[worst], worst, cameras[worst]['latency_budget_ms']))
        decisions = []
        for camera in sorted(recent):
            load = loads.get(camera, 0)
            if not load or load * len(recent) < total:
                continue  # not among the busiest: fewer than its share of the window's sampled frames
            current, ceiling = intervals[camera], cameras[camera]['max_sample_every']
            share = '%s; %d of %d sampled frames in the window' % (why, load, total)
            if current >= ceiling:
                decisions.append((camera, current, 'max', share + '; already at max_sample_every=%d' % ceiling))
            else:
                decisions.append((camera, min(current * 2, ceiling), 'raise', share))
        return decisions
    if any(p99s[camera] >= cameras[camera]['latency_budget_ms'] * ADAPT_HEADROOM for camera in recent):
        return []
    raised = [camera for camera in cameras if intervals[camera] > cameras[camera]['sample_every']]
    if not raised:
        return []
    camera = max(raised, key=lambda c: (intervals[c] / float(cameras[c]['sample_every']), c))
    worst = max(p99s.values())
    new = max(cameras[camera]['sample_every'], intervals[camera] // 2)
    return [(camera, new, 'lower', 'p99 %d ms, under half of every budget' % worst)]


def sample_interval(rec):
    """The camera's sampling interval: its sample_every, or what adaptive sampling raised it to.

    Read from Redis at most every CACHE_S per camera and worker (not a round trip per frame,
    and none of the default path's frames pay for it): an interval change reaches every worker
    within that time.
    """
    params, camera = rec['params'], rec['key']
    raised = cached(_intervals, camera, lambda: _int_or_none(execute('HGET', ADAPT_INTERVAL_KEY, camera)))
    if raised is None:
        return params['sample_every']
    if params['latency_budget_ms'] <= 0:  # turned off: back to sample_every
        _set_interval(camera, params['sample_every'], 'off', 'latency_budget_ms is 0: adaptive sampling off')
        return params['sample_every']
    return max(params['sample_every'], raised)


def _int_or_none(value):
    return int(value) if value is not None else None


def _set_interval(camera, interval, decision, reason):
    if decision != 'off':
        execute('HINCRBY', STATS_KEY, 'adapt_' + decision, '1')
        execute('HINCRBY', CAMERA_STATS_PREFIX + camera, 'adapt_' + decision, '1')
    execute('HSET', CAMERA_STATS_PREFIX + camera, 'interval', str(interval), 'interval_reason', reason)
    if decision == 'off':
        execute('HDEL', ADAPT_INTERVAL_KEY, camera)
        _intervals.pop(camera, None)
    else:
        execute('HSET', ADAPT_INTERVAL_KEY, camera, str(interval))
        _intervals[camera] = (interval, time.time() + CACHE_S)
    if decision != 'max':  # at the ceiling it is only counted: it would repeat every window
        log('gearcam: %s sampling interval %s -> %d: %s' % (camera, decision, interval, reason), level='notice')


def record_latency(rec):
    """A model run's camera-to-result latency, for the window's p99 (only while the camera has a budget)."""
    if rec['params']['latency_budget_ms'] <= 0:
        return
    now_ms = int(time.time() * 1000)
    arrived = int(rec['id'].split('-')[0])
    execute('LPUSH', ADAPT_SAMPLES_KEY, '%d %d %s' % (now_ms, max(0, now_ms - arrived), rec['key']))
    execute('LTRIM', ADAPT_SAMPLES_KEY, '0', str(ADAPT_KEEP - 1))


def adapt(rec):
    """Once per window (whichever worker claims it): decide and apply the interval changes."""
    params = rec['params']
    if params['latency_budget_ms'] <= 0:
        return
    window_ms = int(params['latency_window_s'] * 1000)
    if time.time() < _adapt_next['at']:  # this worker tried within the window: no round trip
        return
    _adapt_next['at'] = time.time() + params['latency_window_s']
    if not execute('SET', ADAPT_TICK_KEY, rec['key'], 'NX', 'PX', str(window_ms)):
        return
    samples = []
    for entry in execute('LRANGE', ADAPT_SAMPLES_KEY, '0', '-1') or []:
        at, latency, camera = _text(entry).split(' ', 2)
        samples.append((int(at), int(latency), camera))
    stored = dict((camera, int(value)) for camera, value in _pairs(execute('HGETALL', ADAPT_INTERVAL_KEY)))
    loads = dict((camera, int(value)) for camera, value in _pairs(execute('HGETALL', ADAPT_LOAD_KEY)))
    execute('DEL', ADAPT_LOAD_KEY)
    cameras, intervals = {}, {}
    for camera in set(stored) | set(loads) | set(sample[2] for sample in samples) | set([rec['key']]):
        camera_params = params if camera == rec['key'] else _quiet_params(camera)
        if camera_params['latency_budget_ms'] > 0:
            cameras[camera] = camera_params
            intervals[camera] = max(camera_params['sample_every'], stored.get(camera, 0))
    now_ms = int(time.time() * 1000)
    p99s = [p99([s[1] for s in samples if s[2] == c and now_ms - s[0] <= window_ms]) for c in cameras]
    execute('HSET', STATS_KEY, 'latency_p99_ms', '%d' % max(p99s or [0]))
    for camera, interval, decision, reason in adapt_decisions(samples, cameras, intervals, loads, now_ms):
        _set_interval(camera, interval, decision, reason)


def _quiet_params(camera):
    """Another camera's parameters, without reporting its config problems (its own frames do that)."""
    params, _ = parse_config(execute('HGETALL', CONFIG_KEY))
    params, _ = parse_config(execute('HGETALL', CONFIG_KEY + ':' + camera), base=params)
    return params


# A StreamReader runs one batch at a time per stream, so with one frame per run the pipeline's
# rate is one over a frame's latency. Up to BATCH frames per run (or whatever arrived within
# DURATION_MS) overlap their decoding and model runs, which RedisAI's auto-batching then merges:
# measured on 2 cores (`invoke bench`), 1.5x the frames/s of batch=1 for ~30 ms more latency at
# low rates. Under overload, 16 rather than 8 frames a run left the cores idle less often at a
# run's end, when its last frame is in the model and the next run has not started (+5-8 %).
BATCH = 16
DURATION_MS = 10


def register():
    """The one registration: every camera stream, in small batches, failures counted and skipped."""
    builder = GB('StreamReader', desc=DESCRIPTION)
    builder.map(receive).filter(sampled).map(classify).filter(is_hit).map(publish)
    builder.register(prefix='camera:*', batch=BATCH, duration=DURATION_MS, mode='async', onFailedPolicy='continue',
                     trimStream=False, convertToStr=False, collect=False, onUnregistered=stop_decoders)


try:
    GB  # RedisGears provides it (as a global or a builtin)
except NameError:  # a plain import (the tests) only gets the functions above
    pass
else:
    register()
