"""Run the modules' official Python clients' own tests against the gearcam runtime.

`--client redisai-py`: redisai-py v1.3.0's `test/test.py` (plain pytest) talks to a RedisAI server at
localhost:6379, so a runtime is started on that port (refused if something holds it). `--client
gearsclient`: gearsclient v1.0.2's `test.py` is an RLTest file, run by worker.py with this folder's
RLTest stand-in (a fresh redis-server + runtime per test). The test files are exported from a git copy
of RedisAI/redisai-py or RedisGears/redisgears-py into --out at run time; nothing of them is copied into
the project. The one file redisai-py's copy lacks (resnet50.pb, git-LFS) is made as a stand-in with its
interface (regen_models.py, with --gearcam-python, which needs TensorFlow). Each client runs in a virtualenv of its own, with what its tests import:

    python3 -m venv /tmp/raivenv && /tmp/raivenv/bin/pip install 'redisai==1.3.0' 'redis==4.6.0' \\
        'numpy<2' 'ml2rt==0.2.0' scikit-image pytest
    python3 client_suite.py --client redisai-py --gearcam-python ../../.venv/bin/python \\
        --client-python /tmp/raivenv/bin/python --repo <redisai-py git dir> --out /tmp/rai
    python3 client_suite.py --client gearsclient --gearcam-python ../../.venv/bin/python \\
        --client-python ../../.venv-gearsclient/bin/python --repo <redisgears-py git dir> --out /tmp/gc

`--client gears-snippets`: RedisGears 1.2's documentation snippets (`docs/snippets/test_snippets.py`, plain
pytest against localhost:6379; it imports `docker`, used only with `--image`):

    python3 -m venv /tmp/snipvenv && /tmp/snipvenv/bin/pip install 'redis==4.6.0' pytest 'docker==7.1.0'
    python3 client_suite.py --client gears-snippets --gearcam-python ../../.venv/bin/python \\
        --client-python /tmp/snipvenv/bin/python --repo <RedisGears git dir> --out /tmp/snip

`--client rgsync`: rgsync's write-behind and write-through tests (`tests/test_sqlwritebehind.py`'s
`BaseSQLTest`, RedisGears' most used recipe) with a SQLite database, the one its connectors reach
without a server. Its own subclasses need MySQL, PostgreSQL or DB2 in Docker; the subclass run here
is written into --out at run time (`_RGSYNC_SQLITE` below: where the database is, and the same
install script with rgsync's `SQLiteConnector`). rgsync is built from the git copy into a wheel and
sent as `REQUIREMENTS <path of the wheel>`, as its tests send it; it and its dependencies
(SQLAlchemy 1.4, pymongo, a newer redis-py) go into a Gears virtualenv of the suite's own
(--out/gears-venv, a copy of the project's .venv-gears), so the project's is left alone:

    python3 -m venv /tmp/rgvenv && /tmp/rgvenv/bin/pip install 'redis==4.6.0' 'pytest==7.4.4' \
        'SQLAlchemy==1.4.35' toml 'tox==3.28.0'
    python3 client_suite.py --client rgsync --gearcam-python ../../.venv/bin/python \
        --client-python /tmp/rgvenv/bin/python --repo <rgsync git dir> --out /tmp/rgsync

`--client gears-cli`: gears-cli 1.2.0's tests (`pytests/test_basics.py`, an RLTest file: `run`,
requirements installed, exported, the node restarted, imported back, with and without an ACL user), which
its CI runs over TLS only (`RLTest --tls ...`): its own `generate_tests_cert.sh` makes the certificates
in --out, and each runtime the stand-in starts serves the TLS port only (`--port 0 --tls-port`), as
RLTest starts redis-server. Run from --out, where its tests find `./pytests/example.py` and `./tests/tls`:

    python3 -m venv /tmp/gclivenv && /tmp/gclivenv/bin/pip install 'gears-cli==1.2.0' 'redis==4.6.0'
    python3 client_suite.py --client gears-cli --gearcam-python ../../.venv/bin/python \
        --client-python /tmp/gclivenv/bin/python --repo <gears-cli git dir> --out /tmp/gcli

`--client fraud-detection`: RedisAI's Fraud Detection demo (RedisAI/FraudDetectionDemo), its own
`tests/test_demo_flow.py` against the runtime on port 6379: a TorchScript script that reads hashes with
`redis.execute`, a TF model stored on two devices (CPU and CPU:1) and a DAG that runs both. Its model and
data are in git-LFS, absent from the git copy: `creditcardfraud.pb` is regen_models.py's stand-in (the
same model RedisAI's own flow tests load, with its interface and random weights), `creditcard.csv`
random rows in the credit-card set's columns with increasing times (`_FRAUD_CSV` below); the tests
check shapes, keys and hashes, not the model's verdicts:

    /tmp/raivenv/bin/pip install 'pandas==2.2.3'
    python3 client_suite.py --client fraud-detection --gearcam-python ../../.venv/bin/python \
        --client-python /tmp/raivenv/bin/python --repo <FraudDetectionDemo git dir> --out /tmp/fraud

`--client redisai-js`: RedisAI's TypeScript client (redisai-js, master), its mocha suite
(`tests/test_client.ts`, 53 cases) against the runtime on port 6379, with its own pinned packages
(`npm ci` in --out, from the npm registry; node and npm on PATH) and stand-ins for its two git-LFS
models (resnet50.pb, tiny-yolo-voc.pb: regen_models.py):

    python3 client_suite.py --client redisai-js --gearcam-python ../../.venv/bin/python \
        --repo <redisai-js git dir> --out /tmp/raijs

`--client animal-recognition`: RedisGears' Animal Recognition demo (RedisGears/AnimalRecognitionDemo, the demo
gearcam follows), unmodified: its `app/init.py` stores the model and sends `app/gear.py` (a StreamReader on
`camera:0`, `redisAI.modelRunnerRunAsync` awaited, `REQUIREMENTS imageio opencv-python-headless<4.5`, installed
from the package index into a copy of the project's Gears virtualenv), and `camera/read_camera.py --test` sends
its photograph ten times a second. Its own check (`tests/cats-n-dogs.sh`, which runs it all in docker-compose):
with `ANIMAL=cat` the stream `cats` has entries within 3 x 5 s, with `ANIMAL=dog` it has none, each on a fresh
Redis. The model is git-LFS: its stand-in (regen_models.py's `demo_mobilenet_v2.pb`) has its interface and
tells the demo's two photographs apart by their mean colour, nothing more:

    python3 -m venv /tmp/arvenv && /tmp/arvenv/bin/pip install --only-binary opencv-python-headless \\
        'redis==4.6.0' 'numpy<2' 'opencv-python-headless<4.5'
    python3 client_suite.py --client animal-recognition --gearcam-python ../../.venv/bin/python \
        --client-python /tmp/arvenv/bin/python --repo <AnimalRecognitionDemo git dir> --out /tmp/animals

(`.venv-gearsclient` is what `scripts/bootstrap --dev` makes: gearsclient with the cloudpickle the
runtime's Gears workers have, docs/gears.md.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

_REFS = {"redisai-py": "v1.3.0", "gearsclient": "v1.0.2", "gears-snippets": "1.2", "rgsync": "master",
         "gears-cli": "master", "fraud-detection": "master", "redisai-js": "master",
         "animal-recognition": "master"}  # fmt: skip
_TESTS = {"redisai-py": ["test"], "gearsclient": ["test.py"], "gears-snippets": ["docs/snippets"],
          "rgsync": ["tests", "rgsync", "pyproject.toml", "README.md", "tox.ini"],
          "gears-cli": ["pytests", "generate_tests_cert.sh"],
          "fraud-detection": ["app", "dataloader", "tests", "example_client"],
          "redisai-js": ["package.json", "package-lock.json", "tsconfig.json", "src", "tests"],
          "animal-recognition": ["app", "camera", "frontend"]}  # fmt: skip
# The RLTest file each RLTest client runs, its folder to run in (RLTest's own), and its RLTest options.
_RLTEST = {"gearsclient": "test.py", "gears-cli": "pytests/test_basics.py"}
# gears-cli's tox.ini: RLTest --tls --tls-cert-file ./tests/tls/redis.crt ... --tls-passphrase foobar
_GEARS_CLI_TLS = {"PEER_TLS_CERT_FILE": "tests/tls/redis.crt", "PEER_TLS_KEY_FILE": "tests/tls/redis.key",
                  "PEER_TLS_CA_CERT_FILE": "tests/tls/ca.crt"}  # fmt: skip
_GEARS_CLI_PASSPHRASE = "foobar"
# The pytest file each plain-pytest client runs against the runtime on port 6379.
_PYTEST = {"redisai-py": "test/test.py", "gears-snippets": "docs/snippets/test_snippets.py",
           "rgsync": "tests/test_gearcam_sqlite.py", "fraud-detection": "tests/test_demo_flow.py"}  # fmt: skip
HERE = Path(__file__).resolve().parent

# rgsync's BaseSQLTest with SQLite: what its MySQL/PostgreSQL subclasses give (credentials, the URL its
# test reads the table through, the install script), for a database file. Written by this tool, not rgsync's.
_RGSYNC_SQLITE = '''"""Written by gearcam's client_suite.py: rgsync's BaseSQLTest against a SQLite database."""
import os

from tests.test_sqlwritebehind import BaseSQLTest

SCRIPT = """
from rgsync import RGWriteBehind, RGWriteThrough
from rgsync.Connectors import SQLiteConnector, SQLiteConnection

connection = SQLiteConnection('%s')
personsConnector = SQLiteConnector(connection, 'persons', 'person_id')

personsMappings = {
    'first_name':'first',
    'last_name':'last',
    'age':'age'
}

RGWriteBehind(GB,  keysPrefix='person', mappings=personsMappings, connector=personsConnector, name='PersonsWriteBehind',  version='99.99.99')
RGWriteThrough(GB, keysPrefix='__',     mappings=personsMappings, connector=personsConnector, name='PersonsWriteThrough', version='99.99.99')
"""


class TestSQLite(BaseSQLTest):
    def credentials(self):
        return {"path": os.environ["GEARCAM_RGSYNC_DB"]}

    def connection(self, **kwargs):
        return "sqlite:///" + kwargs["path"]

    def run_install_script(self, pkg, **kwargs):
        # The wheel this tool built: find_package() names /build/dist/... inside any container.
        self.env.execute_command("RG.PYEXECUTE", SCRIPT % kwargs["path"], "REQUIREMENTS", os.environ["GEARCAM_RGSYNC_WHEEL"])
'''


def _export(repo: Path, ref: str, out: Path, path: str) -> None:
    """`path` of `ref`, file by file: `git archive` stops at the first blob the copy lacks."""
    names = subprocess.run(
        ["git", "--git-dir", str(repo), "ls-tree", "-r", "--name-only", ref, path],
        check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    for name in names:
        blob = subprocess.run(["git", "--git-dir", str(repo), "show", f"{ref}:{name}"], capture_output=True)
        if blob.returncode == 0:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_bytes(blob.stdout)
        else:
            print(f"not in the git copy (its tests cannot run): {name}")


def _rgsync(args: argparse.Namespace) -> dict[str, str]:
    """rgsync's wheel, a Gears virtualenv for it, the SQLite subclass; the environment the run needs."""
    dist = args.out / "dist"
    if not list(dist.glob("rgsync-*.whl")):
        subprocess.run([str(args.client_python), "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist),
                        str(args.out)], check=True)  # fmt: skip
    (wheel,) = dist.glob("rgsync-*.whl")
    venv = _gears_venv(args)
    (args.out / _PYTEST["rgsync"]).write_text(_RGSYNC_SQLITE)
    database = args.out / "rgsync.db"
    database.unlink(missing_ok=True)
    # rgsync's tests were written for server databases, where a reader never holds up a writer; SQLite's
    # default journal lets the test's unfinished SELECT block the recipe's commit. WAL (kept in the file)
    # gives SQLite the same independence.
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.execute("PRAGMA journal_mode=WAL")
    return {"GEARCAM_RGSYNC_WHEEL": str(wheel), "GEARCAM_RGSYNC_DB": str(database),
            "GEARCAM_RUNTIME__GEARS_PYTHON": str(venv / "bin" / "python")}  # fmt: skip


def _gears_venv(args: argparse.Namespace) -> Path:
    """A Gears virtualenv of the run's own, for the requirements its scripts install: a copy of the project's,
    its pins included, so the project's is left alone."""
    venv = args.out / "gears-venv"
    if not (venv / "bin" / "python").exists():
        project = HERE.parents[1] / ".venv-gears"
        if not (project / "bin" / "python").exists():
            sys.exit(f"no {project}: run scripts/bootstrap first (it makes the Gears virtualenv)")
        shutil.copytree(project, venv, symlinks=True)
    return venv


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _port_free(port: int, client: str) -> None:
    if _listening(port):
        sys.exit(f"port {port} is taken: {client}'s tests connect there; stop what holds it")


def _fraud_csv(path: Path, rows: int = 1200) -> None:
    """The credit-card set's columns (Time, V1..V28, Amount, Class), random values, Time in seconds rising from 0
    as the real set's does (the demo looks transactions up by time ranges)."""
    import random

    rng = random.Random(0)
    header = ["Time", *(f"V{i}" for i in range(1, 29)), "Amount", "Class"]
    lines, time_s = [",".join(header)], 0
    for _ in range(rows):
        time_s += rng.choice((0, 0, 1, 2))
        values = [f"{rng.gauss(0, 1.5):.6f}" for _ in range(28)]
        lines.append(",".join([str(time_s), *values, f"{abs(rng.gauss(0, 100)):.2f}", str(int(rng.random() < 0.01))]))
    path.write_text("\n".join(lines) + "\n")


def _fraud_detection(args: argparse.Namespace) -> None:
    """Stand-ins for the demo's git-LFS files: the model (regen_models.py's) and the data (_fraud_csv)."""
    model = args.out / "app" / "models" / "creditcardfraud.pb"
    if model.read_bytes().startswith(b"version https://git-lfs"):
        made = args.out / "stand-ins"
        subprocess.run([str(args.gearcam_python), str(HERE / "regen_models.py"), str(made), "creditcardfraud.pb"],
                       check=True, capture_output=True)  # fmt: skip
        model.write_bytes((made / "creditcardfraud.pb").read_bytes())
    data = args.out / "dataloader" / "data" / "creditcard.csv"
    if data.read_bytes().startswith(b"version https://git-lfs"):
        _fraud_csv(data)


def _wait(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the runtime exited with code {proc.returncode}; see its log")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"the runtime did not answer on port {port} within {timeout:.0f} s")


def _gears_cli_certificates(args: argparse.Namespace) -> dict[str, str]:
    """gears-cli's own generate_tests_cert.sh, run once in --out; the stand-in's TLS options."""
    if not (args.out / "tests" / "tls" / "redis.dh").exists():
        subprocess.run(["bash", "generate_tests_cert.sh"], cwd=args.out, check=True, capture_output=True)
    files = {name: str(args.out / path) for name, path in _GEARS_CLI_TLS.items()}
    # gears-cli connects to its default, localhost:6379, where RLTest (ports not randomized) puts the master.
    _port_free(6379, args.client)
    return {**files, "PEER_TLS_PASSPHRASE": _GEARS_CLI_PASSPHRASE, "PEER_MASTER_PORT": "6379"}


def _rltest(args: argparse.Namespace) -> int:
    """An RLTest file through worker.py and the stand-in, which start a runtime per test."""
    work = args.out / "work"
    # Each test's redis-server starts empty, as under RLTest: a folder left by an earlier run into the same --out
    # held the RDB its Redis saved at shutdown (a list pushed twice, a registration already there).
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    results = args.out / "results.jsonl"
    results.unlink(missing_ok=True)
    env = {
        **os.environ, "PEER_GEARCAM_PYTHON": str(args.gearcam_python.absolute()), "PEER_WORKDIR": str(work),
        "PEER_REDIS_SERVER": subprocess.run(["which", "redis-server"], capture_output=True, text=True).stdout.strip(),
        "PEER_SUITE": "gears", "PEER_EVENTS": str(args.out / "events.jsonl"),
        **(_gears_cli_certificates(args) if args.client == "gears-cli" else {}),
    }  # fmt: skip
    with (args.out / "worker.log").open("wb") as log:
        subprocess.run(
            [str(args.client_python), str(HERE / "worker.py"), "--file", str(args.out / _RLTEST[args.client]),
             "--results", str(results), "--cwd", str(args.out)],
            env=env, stdout=log, stderr=subprocess.STDOUT, timeout=1800,
        )  # fmt: skip
    outcomes = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    ended = {o["test"]: o for o in outcomes if o.get("test") and o.get("status")}
    failed = [name for name, o in ended.items() if o["status"] != "pass"]
    for name in failed:
        print(f"FAILED {name}: {str(ended[name].get('detail', ''))[:300]}")
    print(f"{len(ended) - len(failed)} passed, {len(failed)} failed; the worker's log: {args.out / 'worker.log'}")
    return 1 if failed or not ended else 0


# Models a client's git copy lacks (git-LFS), each made by regen_models.py's job of that name, with the
# model's interface and random weights, as for RedisAI's flow tests: the tests that load them check the
# replies (OK, a DAG's shape, a class index in range), not what a trained model would answer.
_STAND_INS = {
    "redisai-py": [("imagenet/resnet50.pb", "test/testdata/resnet50.pb")],
    "redisai-js": [("imagenet/resnet50.pb", "tests/test_data/imagenet/resnet50.pb"),
                   ("tiny-yolo-voc.pb", "tests/test_data/tiny-yolo-voc.pb")],
}  # fmt: skip


def _stand_ins(args: argparse.Namespace) -> None:
    for job, path in _STAND_INS.get(args.client, []):
        target = args.out / path
        if target.exists() and not target.read_bytes().startswith(b"version https://git-lfs"):
            continue
        made = args.out / "stand-ins"
        result = subprocess.run([str(args.gearcam_python), str(HERE / "regen_models.py"), str(made), job],
                                capture_output=True, text=True)  # fmt: skip
        if result.returncode != 0 or not (made / job).exists():
            print(f"no stand-in for {job} (its tests cannot run): {result.stderr[-500:]}")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((made / job).read_bytes())
        print(f"{path}: a stand-in with its interface (regen_models.py)")


def _test_command(args: argparse.Namespace) -> list[str]:
    """The client's own test command, run in --out against the runtime on port 6379."""
    if args.client == "redisai-js":
        if not (args.out / "node_modules").exists():  # its pinned packages; `prepare` compiles src/ with tsc
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=args.out, check=True, capture_output=True)
        # `npm test` without nyc's coverage; --exit, so a failed test's open client cannot keep mocha waiting
        return ["npx", "mocha", "--exit", "--timeout", "90000", "--require", "ts-node/register", "--recursive",
                "tests/test_client.ts"]  # fmt: skip
    return [str(args.client_python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore",
            str(args.out / _PYTEST[args.client])]  # fmt: skip


def _on_6379(args: argparse.Namespace) -> int:
    """A plain pytest file whose tests connect to localhost:6379 (redisai-py's; RedisGears' documentation
    snippets, each sent with RG.PYEXECUTE after a FLUSHALL)."""
    _stand_ins(args)
    if args.client == "fraud-detection":
        _fraud_detection(args)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(_rgsync(args) if args.client == "rgsync" else {})}
    _port_free(6379, args.client)
    log = (args.out / "runtime.log").open("wb")
    runtime = subprocess.Popen(
        [str(args.gearcam_python.absolute()), "-m", "gearcam.runtime", "--port", "6379"],
        stdout=log, stderr=subprocess.STDOUT, cwd=HERE.parents[1], env=env,
    )  # fmt: skip
    try:
        _wait(6379, runtime)
        report = args.out / "report.txt"
        result = subprocess.run(_test_command(args), cwd=args.out, capture_output=True, text=True, env=env)
        report.write_text(result.stdout + result.stderr)
        said = (" passed", " passing", " failing")  # pytest's summary, mocha's
        summary = [
            line for line in result.stdout.splitlines() if line.startswith("FAILED") or any(s in line for s in said)
        ]
        print("\n".join(summary) or result.stdout[-2000:])
        print(f"whole report: {report}; the runtime's log: {args.out / 'runtime.log'}")
        return result.returncode
    finally:
        runtime.terminate()
        runtime.wait(30)
        log.close()


def _start_runtime(args: argparse.Namespace, env: dict[str, str], log_name: str) -> subprocess.Popen[bytes]:
    """`python -m gearcam.runtime --port 6379` with its embedded redis-server (a fresh, empty one each time)."""
    _port_free(6379, args.client)
    with (args.out / log_name).open("wb") as log:
        runtime = subprocess.Popen(
            [str(args.gearcam_python.absolute()), "-m", "gearcam.runtime", "--port", "6379"],
            stdout=log, stderr=subprocess.STDOUT, cwd=HERE.parents[1], env=env,
        )  # fmt: skip
    _wait(6379, runtime)
    return runtime


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _redis(*args: str) -> str:
    return subprocess.run(["redis-cli", "-p", "6379", *args], capture_output=True, text=True, check=True).stdout


def _demo_model(args: argparse.Namespace) -> None:
    model = args.out / "app" / "models" / "mobilenet_v2_1.4_224_frozen.pb"
    if not model.read_bytes().startswith(b"version https://git-lfs"):
        return
    made = args.out / "stand-ins"
    made.mkdir(exist_ok=True)
    for photo in ("cat.jpg", "dog.jpg"):
        shutil.copy(args.out / "camera" / photo, made / photo)
    subprocess.run([str(args.gearcam_python), str(HERE / "regen_models.py"), str(made), "demo_mobilenet_v2.pb"],
                   check=True, capture_output=True)  # fmt: skip
    model.write_bytes((made / "demo_mobilenet_v2.pb").read_bytes())
    print("app/models/mobilenet_v2_1.4_224_frozen.pb: a stand-in (regen_models.py, demo_mobilenet_v2.pb)")


# A browser of the demo's pages, as far as the check needs: one line a picture its page's WebSocket sends.
_PAGE_WATCHER = """const WebSocket = require('ws');
const page = new WebSocket(process.argv[1]);
page.on('message', (data) => { if (String(data).startsWith('data:image/jpeg;base64,')) console.log('picture'); });
page.on('error', (err) => { console.error(String(err)); process.exit(1); });
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pages(args: argparse.Namespace, animal: str) -> list[tuple[str, subprocess.Popen[bytes], Path]]:
    """The demo's two pages (frontend/server.js: `all` and `cats`, as its docker-compose.yaml runs them), each with a
    watcher on its WebSocket; (stream, processes to stop, the watcher's output)."""
    frontend = args.out / "frontend"
    if not (frontend / "node_modules").exists():  # its packages, from the npm registry (it pins no lock file)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=frontend, check=True, capture_output=True)
    pages = []
    for stream in ("all", "cats"):
        port = _free_port()
        env = {**os.environ, "STREAM": stream, "PORT": str(port), "REDIS_HOST": "127.0.0.1", "REDIS_PORT": "6379"}
        with (args.out / f"page-{stream}-{animal}.log").open("wb") as log:
            server = subprocess.Popen(
                ["node", "server.js"], cwd=frontend, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while not _listening(port):
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit(f"the demo's page for `{stream}` did not start: see {args.out}/page-{stream}-{animal}.log")
            time.sleep(0.2)
        seen = args.out / f"pictures-{stream}-{animal}.txt"
        with seen.open("wb") as out:
            watcher = subprocess.Popen(["node", "-e", _PAGE_WATCHER, f"ws://127.0.0.1:{port}"], cwd=frontend,
                                       stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        pages += [(stream, server, seen), (stream, watcher, seen)]
    time.sleep(1)  # the watchers connected, the pages' XREAD BLOCK sent
    return pages


def _animal_recognition(args: argparse.Namespace) -> int:
    """The demo's own check, in the order its tests/cats-n-dogs.sh takes it, each animal on a fresh runtime."""
    _demo_model(args)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
           "GEARCAM_RUNTIME__GEARS_PYTHON": str(_gears_venv(args) / "bin" / "python")}  # fmt: skip
    failed = 0
    for animal, expect_cats in (("cat", True), ("dog", False)):
        runtime = _start_runtime(args, env, f"runtime-{animal}.log")
        camera: subprocess.Popen[bytes] | None = None
        pages: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        try:
            with (args.out / f"init-{animal}.log").open("wb") as log:
                subprocess.run([str(args.client_python), "init.py"], cwd=args.out / "app", stdout=log,
                               stderr=subprocess.STDOUT, check=True, timeout=900)  # fmt: skip
            pages = _pages(args, animal)
            with (args.out / f"camera-{animal}.log").open("wb") as log:
                camera = subprocess.Popen(
                    [str(args.client_python), "camera/read_camera.py", "--test"], cwd=args.out,
                    env={**env, "ANIMAL": animal}, stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
            for _ in range(3):  # cats-n-dogs.sh: up to three looks, 5 s apart, until `cats` has an entry
                time.sleep(5)
                if int(_redis("XLEN", "cats")) > 0:
                    break
            _stop(camera)  # then every frame sent is one the gear has to pass on to `all`
            # The StreamReader trims `camera:0` (RedisGears' trimStream), so the frames are counted by the gear's
            # own `log` lines: one `shouldTakeFrame` line a frame, one `addToGraphRunner: animal=` a classified one.
            deadline, last = time.monotonic() + 30, -1
            while time.monotonic() < deadline:
                texts = [line for line in _redis("XRANGE", "log", "-", "+").splitlines() if " " in line]
                frames = sum(text.startswith("shouldTakeFrame ") for text in texts)
                if frames == last and int(_redis("XLEN", "all")) == frames and not int(_redis("XLEN", "camera:0")):
                    break
                last = frames
                time.sleep(1)
            cats, shown = int(_redis("XLEN", "cats")), int(_redis("XLEN", "all"))
            classified = sum(text.startswith("addToGraphRunner: animal= ") for text in texts)
            errors = [text for text in texts if "error" in text]
            time.sleep(1)  # the pages' last pictures reach their watchers
            for _, proc, _ in pages:
                _stop(proc)
            pictures = {stream: seen.read_text().splitlines().count("picture") for stream, _, seen in pages}
            ok = (cats > 0) == expect_cats and not errors and frames > 0 and shown == frames and classified > 0
            # A page shows each entry its XREAD BLOCK returns; entries added while it sends the next XREAD are not
            # shown (the demo reads from `$` each time), so a page shows some of its stream, never more.
            ok = (
                ok
                and 0 < pictures["all"] <= shown
                and (0 < pictures["cats"] <= cats if expect_cats else not pictures["cats"])
            )
            failed += not ok
            print(f"{animal}s: {'OK' if ok else 'FAIL'} ({frames} frames, {shown} in `all`, {classified} classified, "
                  f"{cats} in `cats`, {len(errors)} errors in the gear's `log` stream; the pages showed "
                  f"{pictures['all']} and {pictures['cats']} pictures)")  # fmt: skip
            for line in errors[:5]:
                print("   ", line)
        finally:
            for proc in [*(proc for _, proc, _ in pages), *([camera] if camera else [])]:
                _stop(proc)
            _stop(runtime)
    print(f"the runtimes' logs: {args.out}/runtime-*.log; init.py's and the camera's: init-*.log, camera-*.log")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client", required=True, choices=sorted(_REFS))
    parser.add_argument("--gearcam-python", required=True, type=Path)
    parser.add_argument(
        "--client-python", type=Path, help="a virtualenv with the client and its tests' imports (not for redisai-js)"
    )
    parser.add_argument("--repo", required=True, type=Path, help="git directory of the client's repository")
    parser.add_argument("--ref", help="default: " + ", ".join(f"{ref} for {name}" for name, ref in _REFS.items()))
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    if args.client_python is None and args.client != "redisai-js":
        parser.error(f"--client {args.client} needs --client-python")
    args.out.mkdir(parents=True, exist_ok=True)
    for path in _TESTS[args.client]:
        _export(args.repo, args.ref or _REFS[args.client], args.out, path)
    if args.client == "animal-recognition":
        return _animal_recognition(args)
    return _rltest(args) if args.client in _RLTEST else _on_6379(args)


if __name__ == "__main__":
    sys.exit(main())
