"""Run redisai-py's own tests (RedisAI's official Python client, v1.3.0) against the gearcam runtime.

Its `test/test.py` talks to a RedisAI server at localhost:6379, so a runtime is started on that port
(refused if something holds it). The test files are exported from a git copy of RedisAI/redisai-py
into --out at run time (files the copy does not hold, such as resnet50.pb, stay absent and their tests
fail as not runnable); nothing of them is copied into the project. The client runs in its own
virtualenv, with what its tests import:

    python3 -m venv /tmp/raivenv && /tmp/raivenv/bin/pip install 'redisai==1.3.0' 'redis==4.6.0' \\
        'numpy<2' 'ml2rt==0.2.0' scikit-image pytest
    python3 client_suite.py --gearcam-python ../../.venv/bin/python --client-python /tmp/raivenv/bin/python \\
        --repo <redisai-py git dir> --out /tmp/rai
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def _export(repo: Path, ref: str, out: Path) -> Path:
    """test/ of `ref`, file by file: `git archive` stops at the first blob the copy lacks."""
    names = subprocess.run(
        ["git", "--git-dir", str(repo), "ls-tree", "-r", "--name-only", ref, "test"],
        check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    for name in names:
        blob = subprocess.run(["git", "--git-dir", str(repo), "show", f"{ref}:{name}"], capture_output=True)
        if blob.returncode == 0:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_bytes(blob.stdout)
        else:
            print(f"not in the git copy (its tests cannot run): {name}")
    return out / "test" / "test.py"


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gearcam-python", required=True, type=Path)
    parser.add_argument(
        "--client-python", required=True, type=Path, help="a virtualenv with redisai and its tests' imports"
    )
    parser.add_argument("--repo", required=True, type=Path, help="git directory of RedisAI/redisai-py")
    parser.add_argument("--ref", default="v1.3.0")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 6379)) == 0:
            sys.exit("port 6379 is taken: redisai-py's tests connect there; stop what holds it")
    args.out.mkdir(parents=True, exist_ok=True)
    tests = _export(args.repo, args.ref, args.out)
    log = (args.out / "runtime.log").open("wb")
    runtime = subprocess.Popen(
        [str(args.gearcam_python.absolute()), "-m", "gearcam.runtime", "--port", "6379"],
        stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    try:
        _wait(6379, runtime)
        report = args.out / "report.txt"
        result = subprocess.run(
            [str(args.client_python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore", str(tests)],
            cwd=args.out, capture_output=True, text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )  # fmt: skip
        report.write_text(result.stdout + result.stderr)
        summary = [line for line in result.stdout.splitlines() if line.startswith("FAILED") or " passed" in line]
        print("\n".join(summary) or result.stdout[-2000:])
        print(f"whole report: {report}; the runtime's log: {args.out / 'runtime.log'}")
        return result.returncode
    finally:
        runtime.terminate()
        runtime.wait(30)
        log.close()


if __name__ == "__main__":
    sys.exit(main())
