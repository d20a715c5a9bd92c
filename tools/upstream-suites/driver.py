"""Run RedisAI 1.2's and RedisGears 1.2's own RLTest suites against the gearcam runtime.

    <harness-python> driver.py --gearcam-python <gearcam venv>/bin/python \
        --ai-repo <RedisAI git dir> --gears-repo <RedisGears git dir> --out <results dir> [--suite ai|gears|all]

The original test files are exported from the git directories (git archive) into <out>/src; nothing
from them is copied into this folder.  Each test file runs in worker.py (one process, restarted
after a hang); every RLTest Env gets a fresh redis-server + gearcam runtime (RLTest/stack.py).
Results: <out>/results/<suite>/<file>.jsonl; summary: classify.py.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

AI_FILES = ['tests_onnx.py', 'tests_tflite.py', 'tests_tensorflow.py', 'tests_pytorch.py', 'tests_commands.py',
            'tests_dag.py', 'tests_dag_basic.py', 'tests_dag_errors.py', 'tests_common.py']
AI_EXTRA = ['tests_deprecated_commands.py', 'tests_gears_llapi.py', 'test_serializations.py',
            'test_torchscript_extensions.py', 'tests_llapi.py', 'tests_sanitizer.py']
GEARS_FILES = ['test_basics.py', 'test_async.py', 'test_errors.py', 'test_register.py', 'test_sessions.py',
               'test_profile.py', 'test_requirements.py', 'test_rdb_compatibility.py', 'test_network.py']


def git_export(gitdir, ref, path, dest):
    data = subprocess.run(['git', '-C', gitdir, 'archive', '--format=tar', ref, path],
                          check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        t.extractall(dest)


def git_export_files(gitdir, ref, path, dest):
    """Like git_export, file by file, leaving out blobs the mirror does not hold."""
    out = subprocess.run(['git', '-C', gitdir, 'ls-tree', '-r', ref, path], check=True,
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        meta, p = line.split('\t', 1)
        blob = meta.split()[2]
        r = subprocess.run(['git', '-C', gitdir, 'cat-file', 'blob', blob], capture_output=True)
        if r.returncode != 0:
            continue
        fp = os.path.join(dest, p)
        os.makedirs(os.path.dirname(fp), exist_ok=True)
        with open(fp, 'wb') as f:
            f.write(r.stdout)


def export_ai(args, src):
    root = os.path.join(src, 'ai')
    if os.path.exists(root):
        shutil.rmtree(root)
    git_export(args.ai_repo, args.ai_ref, 'tests/flow', root)
    flow = os.path.join(root, 'tests', 'flow')
    data = os.path.join(flow, 'test_data')
    # v1.2.7 fetches test_data from a bucket at build time; the last tag with it in the tree is used instead
    if not os.path.isdir(data):
        tmp = os.path.join(src, '_ai_data')
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        git_export_files(args.ai_repo, args.ai_data_ref, 'tests/flow/test_data', tmp)
        shutil.move(os.path.join(tmp, 'tests', 'flow', 'test_data'), data)
        shutil.rmtree(tmp)
    pointers, real = [], []
    for dp, _, fns in os.walk(data):
        for fn in fns:
            p = os.path.join(dp, fn)
            with open(p, 'rb') as f:
                head = f.read(40)
            (pointers if head.startswith(b'version https://git-lfs') else real).append(os.path.relpath(p, data))
    with open(os.path.join(data, '.lfs_pointers.json'), 'w') as f:
        json.dump(sorted(pointers), f, indent=0)
    listed = []
    lst = os.path.join(flow, 'test_data_files.txt')
    if os.path.exists(lst):
        for line in open(lst):
            line = line.strip()
            if '/test_data/' in line:
                listed.append(line.split('/test_data/', 1)[1])
    inventory = {'lfs_pointer': sorted(pointers), 'real': sorted(real),
                 'listed_but_absent': sorted(set(listed) - set(pointers) - set(real))}
    with open(os.path.join(args.out, 'ai_test_data_inventory.json'), 'w') as f:
        json.dump(inventory, f, indent=1)
    if args.regen:
        regen = os.path.join(HERE, 'regen_models.py')
        r = subprocess.run([args.gearcam_python, regen, data], capture_output=True, text=True)
        with open(os.path.join(args.out, 'regen.log'), 'w') as f:
            f.write(r.stdout + r.stderr)
        print('regen rc=%s (see regen.log)' % r.returncode, flush=True)
        # regenerated files are real now
        pointers = [p for p in pointers if _is_pointer(os.path.join(data, p))]
        with open(os.path.join(data, '.lfs_pointers.json'), 'w') as f:
            json.dump(sorted(pointers), f, indent=0)
    elif pointers:
        # Without the regenerated models (graph.pb, pt-minimal.pt...) the tests that load them
        # error or time out, and a rerun of one file reads as a regression.
        print('note: %d test_data files are git-LFS pointers; pass --regen to make the ones '
              'regen_models.py can (every run into a fresh --out needs it)' % len(pointers), flush=True)
    return flow, data


def _is_pointer(p):
    with open(p, 'rb') as f:
        return f.read(40).startswith(b'version https://git-lfs')


def export_gears(args, src):
    root = os.path.join(src, 'gears')
    if os.path.exists(root):
        shutil.rmtree(root)
    git_export(args.gears_repo, args.gears_ref, 'pytest', root)
    return os.path.join(root, 'pytest')


def run_file(args, suite, test_dir, fname, data_dir):
    res_dir = os.path.join(args.out, 'results', suite)
    os.makedirs(res_dir, exist_ok=True)
    results = os.path.join(res_dir, fname.replace('.py', '.jsonl'))
    events = os.path.join(res_dir, fname.replace('.py', '.events.jsonl'))
    for p in (results, events):
        if os.path.exists(p):
            os.remove(p)
    work = os.path.join(args.out, 'work', suite, fname.replace('.py', ''))
    # A fresh folder: a run's redis-servers would load the dump.rdb an earlier run into the same --out left there
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    env = dict(os.environ)
    env.update({'PEER_GEARCAM_PYTHON': args.gearcam_python, 'PEER_REDIS_SERVER': args.redis_server,
                'PEER_WORKDIR': work, 'PEER_SUITE': suite, 'PEER_EVENTS': events,
                'PYTHONUNBUFFERED': '1'})
    env.setdefault('DEVICE', 'CPU')
    # as RedisAI's tests_setup/tests.sh: ROOT is the checkout, MODULE the built redisai.so under it; the
    # runtime is started with BACKENDSPATH beside MODULE (stack.py), RedisAI's own default
    # (the exported checkout: tests/flow under it, as test_forbidden_external_initializers copies
    # ROOT/tests/flow/test_data/Pads.bin)
    if suite == 'ai':
        env.setdefault('ROOT', os.path.abspath(os.path.join(test_dir, '..', '..')))
        # RLTest makes its --log-dir (./logs beside the tests) before any test runs
        os.makedirs(os.path.join(test_dir, 'logs'), exist_ok=True)
    env.setdefault('MODULE', os.path.join(env.get('ROOT', os.path.abspath(args.out)), 'install-' + env['DEVICE'].lower(), 'redisai.so'))
    skip_until = 0
    while True:
        cmd = [sys.executable, os.path.join(HERE, 'worker.py'), '--file', os.path.join(test_dir, fname),
               '--results', results, '--skip-until', str(skip_until)]
        if args.tests:
            cmd += ['--tests', *args.tests]
        if data_dir:
            cmd += ['--data-dir', data_dir]
        log = open(os.path.join(res_dir, fname.replace('.py', '.log')), 'a')
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        hung = None
        while proc.poll() is None:
            time.sleep(1)
            cur = _current(results)
            if cur and time.time() - cur['t'] > args.timeout:
                hung = cur
                break
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the worker and the stacks it started (same session)
            proc.wait()
        else:
            # the worker is gone; end the stacks it may have left (same process group)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
        cur = _current(results)
        if hung is None and cur is None:
            break  # finished (or import error)
        cur = hung or cur
        with open(results, 'a') as f:
            f.write(json.dumps({'event': 'end', 'idx': cur['idx'], 'test': cur['test'],
                                'status': 'timeout' if hung else 'error',
                                'detail': ['no result after %ss (hang)' % args.timeout] if hung
                                else ['worker died (exit %s)' % proc.returncode]}) + '\n')
        skip_until = cur['idx'] + 1
    return results


def _current(results):
    """The test started but not ended, if any."""
    if not os.path.exists(results):
        return None
    cur = None
    with open(results) as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get('event') == 'start':
                cur = r
            elif r.get('event') == 'end' and cur and r.get('idx') == cur['idx']:
                cur = None
    return cur


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--gearcam-python', required=True, help='python of the gearcam virtualenv')
    ap.add_argument('--ai-repo', help='RedisAI git directory (fetched mirror)')
    ap.add_argument('--ai-ref', default='v1.2.7')
    ap.add_argument('--ai-data-ref', default='v1.2.5', help='ref whose tree still has tests/flow/test_data')
    ap.add_argument('--gears-repo', help='RedisGears git directory (fetched mirror)')
    ap.add_argument('--gears-ref', default='1.2')
    ap.add_argument('--redis-server', default=shutil.which('redis-server') or 'redis-server')
    ap.add_argument('--out', required=True)
    ap.add_argument('--suite', default='all', choices=['ai', 'gears', 'all'])
    ap.add_argument('--files', nargs='*', help='only these test files')
    ap.add_argument('--tests', nargs='*', help='only these tests of the files (names as worker.py --list prints them)')
    ap.add_argument('--extra', action='store_true', help='also the other RedisAI flow files (LLAPI, serializations...)')
    ap.add_argument('--regen', action='store_true',
                    help="regenerate the models the RedisAI test_data generator scripts make (graph.pb, pt-minimal.pt...)")
    ap.add_argument('--timeout', type=int, default=180, help='seconds one test may take before it counts as a hang')
    args = ap.parse_args()
    if os.sep in args.gearcam_python:  # the workers run elsewhere: a relative venv path would not resolve there
        args.gearcam_python = os.path.abspath(args.gearcam_python)
    args.out = os.path.abspath(args.out)
    src = os.path.join(args.out, 'src')
    os.makedirs(src, exist_ok=True)
    plan = []
    if args.suite in ('ai', 'all'):
        flow, data = export_ai(args, src)
        files = AI_FILES + (AI_EXTRA if args.extra else [])
        plan += [('ai', flow, f, data) for f in files]
    if args.suite in ('gears', 'all'):
        pyt = export_gears(args, src)
        plan += [('gears', pyt, f, None) for f in GEARS_FILES]
    if args.files:
        plan = [p for p in plan if p[2] in args.files]
    for suite, d, f, data in plan:
        t0 = time.time()
        print('[%s] %s ...' % (suite, f), flush=True)
        run_file(args, suite, d, f, data)
        print('[%s] %s done' % (suite, f), flush=True)
        del t0
    print('results in %s; summarise with classify.py --out %s' % (os.path.join(args.out, 'results'), args.out))


if __name__ == '__main__':
    main()
