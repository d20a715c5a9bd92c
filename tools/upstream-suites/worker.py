"""Runs the tests of one original test file the way RLTest's loader and runner do, against gearcam stacks.

Started by driver.py (one process per file, restarted after a hang); appends JSON lines to --results:
  {"event": "start", "idx": i, "test": name}
  {"event": "end", "idx": i, "test": name, "status": pass|fail|skip|error, ...}
"""
from __future__ import annotations

import argparse
import builtins
import importlib.util
import inspect
import io
import json
import os
import sys
import time
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def emit(path, rec):
    with open(path, 'a') as f:
        f.write(json.dumps(rec, default=str) + '\n')


class DataWatch:
    """Records the test_data files a test reads that are git-LFS pointers or absent."""

    def __init__(self, data_dir, pointers):
        self.data_dir = os.path.realpath(data_dir) if data_dir else None
        self.pointers = {os.path.realpath(os.path.join(data_dir, p)) for p in pointers} if data_dir else set()
        self.hits = set()
        self.on_hit = None
        self._open = builtins.open

    def install(self):
        watch = self

        def open_(file, *a, **kw):
            if isinstance(file, (str, bytes, os.PathLike)) and watch.data_dir:
                p = os.path.realpath(os.fsdecode(file))
                if p.startswith(watch.data_dir):
                    rel = os.path.relpath(p, watch.data_dir)
                    hit = None
                    if p in watch.pointers:
                        hit = 'lfs:' + rel
                    elif not os.path.exists(p):
                        hit = 'missing:' + rel
                    if hit and hit not in watch.hits:
                        watch.hits.add(hit)
                        if watch.on_hit:
                            watch.on_hit(hit)
            return watch._open(file, *a, **kw)
        builtins.open = open_
        io.open = open_


def load_module(path):
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def enumerate_tests(mod):
    """RLTest loader order: dir(module) symbols starting with 'test' (any case); classes expand to methods."""
    out = []
    for sym in dir(mod):
        if not sym.lower().startswith('test'):
            continue
        obj = getattr(mod, sym)
        if inspect.isclass(obj):
            for m in dir(obj):
                if m.lower().startswith('test') and callable(getattr(obj, m)):
                    out.append((sym, m))
        elif inspect.isfunction(obj):
            out.append((sym, None))
    return out


def skip_origin(tb):
    """File:line of the deepest frame inside the test files that raised the skip, and its source line."""
    origin = None
    for fs in traceback.extract_tb(tb):
        if os.path.basename(fs.filename).startswith(('test', 'includes', 'common')):
            origin = '%s:%s: %s' % (os.path.basename(fs.filename), fs.lineno, (fs.line or '').strip())
    return origin


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--file', required=True)
    ap.add_argument('--results', required=True)
    ap.add_argument('--skip-until', type=int, default=0)
    ap.add_argument('--data-dir')
    ap.add_argument('--list', action='store_true')
    ap.add_argument('--tests', nargs='*', help='only these tests (names as --list prints them)')
    ap.add_argument('--cwd', help="folder the tests run in (RLTest's own: where it was started); default: the file's")
    args = ap.parse_args()

    test_dir = os.path.dirname(os.path.abspath(args.file))
    sys.path.insert(0, os.path.join(HERE, 'rltest_shim'))
    sys.path.insert(1, test_dir)
    os.chdir(args.cwd or test_dir)
    import RLTest  # the shim
    from RLTest import stack as _stack  # noqa: F401

    pointers = []
    if args.data_dir and os.path.exists(os.path.join(args.data_dir, '.lfs_pointers.json')):
        with open(os.path.join(args.data_dir, '.lfs_pointers.json')) as f:
            pointers = json.load(f)
    watch = DataWatch(args.data_dir, pointers)
    watch.install()

    try:
        mod = load_module(args.file)
    except BaseException as e:
        emit(args.results, {'event': 'import_error', 'error': '%s: %s' % (type(e).__name__, e),
                            'tb': traceback.format_exc()[-3000:]})
        return 2
    # Shim (listed in README): tests_gears_llapi.py asks MODULE LIST for RedisGears and otherwise tries to
    # MODULE LOAD its .so; the runtime serves RG.* itself, so the check is answered by RG.PYEXECUTE instead.
    if hasattr(mod, 'verify_gears_loaded') and os.environ.get('PEER_SHIM_GEARS_LLAPI', '1') == '1':
        def verify_gears_loaded(env):
            try:
                env.getConnection().execute_command('RG.PYEXECUTE', 'GB().run()')
                return True
            except Exception:
                return False
        mod.verify_gears_loaded = verify_gears_loaded
    tests = enumerate_tests(mod)
    if args.list:
        for t in tests:
            print('%s.%s' % t if t[1] else t[0])
        return 0

    instances = {}  # class name -> (instance, envs, init error)
    class_data = {}
    for idx, (sym, meth) in enumerate(tests):
        if idx < args.skip_until:
            continue
        name = '%s.%s' % (sym, meth) if meth else sym
        if args.tests and name not in args.tests:
            continue
        if meth is None or sym not in instances:
            RLTest.Env.current = None
        emit(args.results, {'event': 'start', 'idx': idx, 'test': name, 't': time.time()})
        watch.on_hit = lambda hit, idx=idx, name=name: emit(args.results, {'event': 'data', 'idx': idx,
                                                                          'test': name, 'hit': hit})
        watch.hits = set()
        status, detail, tb_txt, origin = 'pass', [], None, None
        envs = []
        envs_for_fail = None
        extra = []
        t0 = time.time()
        try:
            if meth is None:
                fn = getattr(mod, sym)
                del RLTest.CREATED[:]
                try:
                    if len(inspect.signature(fn).parameters) > 0:
                        env = RLTest.Env(testName='%s.%s' % (mod.__name__, sym))
                        fn(env)
                    else:
                        fn()
                finally:
                    envs = list(RLTest.CREATED)
            else:
                if sym not in instances:
                    # a class: one instance (its __init__ makes the Env) for all its methods
                    for other, (_, oenvs, _) in list(instances.items()):
                        for e in oenvs:
                            e.stop()
                    instances.clear()
                    del RLTest.CREATED[:]
                    try:
                        inst = getattr(mod, sym)()
                        instances[sym] = (inst, list(RLTest.CREATED), None)
                    except BaseException as e:
                        instances[sym] = (None, list(RLTest.CREATED), e)
                    class_data[sym] = set(watch.hits)  # what the class' __init__ read counts for every method
                watch.hits |= class_data.get(sym, set())
                inst, envs, init_err = instances[sym]
                before = {id(e): len(e.assertionFailedSummary) for e in envs}
                if init_err is not None:
                    raise init_err
                del RLTest.CREATED[:]
                try:
                    # as RLTest does: a class' setUp/tearDown around each of its methods
                    if hasattr(inst, 'setUp'):
                        inst.setUp()
                    try:
                        getattr(inst, meth)()
                    finally:
                        if hasattr(inst, 'tearDown'):
                            inst.tearDown()
                finally:
                    extra = list(RLTest.CREATED)
                envs_for_fail = [(e, before.get(id(e), 0)) for e in envs] + [(e, 0) for e in extra]
        except unittest.SkipTest as e:
            status = 'skip'
            origin = skip_origin(e.__traceback__) or str(e)
        except BaseException as e:  # noqa: BLE001 - a test error of any kind
            status = 'error'
            tb_txt = traceback.format_exc()[-4000:]
            detail.append('%s: %s' % (type(e).__name__, str(e)[:1500]))
        # assertion failures
        if meth is None:
            pairs = [(e, 0) for e in envs]
        else:
            pairs = envs_for_fail if envs_for_fail is not None else [(e, 0) for e in envs]
        fails = []
        for e, start in pairs:
            fails += e.assertionFailedSummary[start:]
        if fails and status == 'pass':
            status = 'fail'
        crashed = []
        alive = True
        for e, _ in pairs:
            try:
                if not e.stack.alive() and e.stack.up:
                    alive = False
            except Exception:
                pass
        if meth is None:
            for e in envs:
                try:
                    c = e.stop()
                    crashed += c
                except Exception as ex:  # noqa: BLE001
                    detail.append('stop failed: %s' % ex)
        else:
            for e in extra:
                try:
                    crashed += e.stop()
                except Exception:
                    pass
        if not alive or crashed:
            detail.append('gearcam runtime died during the test')
            if status == 'pass':
                status = 'fail'
        emit(args.results, {'event': 'end', 'idx': idx, 'test': name, 'status': status,
                            'assert_fails': fails[:40], 'n_assert_fails': len(fails), 'detail': detail,
                            'tb': tb_txt, 'skip_origin': origin, 'data': sorted(watch.hits),
                            'runtime_died': (not alive) or bool(crashed), 'secs': round(time.time() - t0, 1)})
    for _, (_, envs, _) in instances.items():
        for e in envs:
            try:
                e.stop()
            except Exception:
                pass
    emit(args.results, {'event': 'done'})
    return 0


if __name__ == '__main__':
    sys.exit(main())
