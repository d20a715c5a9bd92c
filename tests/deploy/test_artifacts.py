"""docker/fetch-artifacts.sh and the Jetson lock: the pre-flight check, sha256 pins, supplied files, pinned commits.

The script runs for real here, against files in a temporary folder, a `file://` mirror, a local git
repository and a loopback port nobody listens on; only the Docker build around it is absent.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import time
from pathlib import Path

import pytest

from gearcam.config import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "docker" / "fetch-artifacts.sh"
LOCK = PROJECT_ROOT / "docker" / "artifacts-jetson.lock"
DOCKERFILE = PROJECT_ROOT / "docker" / "Dockerfile.jetson"
DEAD_URL = "http://127.0.0.1:9/redismodules/tensorflow/gone.tar.gz"  # the discard port: connection refused


def run(*args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "ARTIFACTS_TIMEOUT": "5", **environ}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env)


def lock_entries() -> dict[str, list[str]]:
    rows = [line.split() for line in LOCK.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return {row[1]: row for row in rows}


def dockerfile_defaults() -> dict[str, str]:
    return dict(re.findall(r"(?m)^ARG (\w+)=(\S+)$", DOCKERFILE.read_text()))


@pytest.fixture
def supplied(tmp_path: Path) -> tuple[Path, Path, bytes]:
    """A folder with one archive, and a lock pinning it (plus a checked-only URL that resolves locally)."""
    folder = tmp_path / "supplied"
    folder.mkdir()
    data = b"libtensorflow for the Jetson\n"
    (folder / "libtf.tar.gz").write_bytes(data)
    lock = tmp_path / "test.lock"
    lock.write_text(
        "# a comment\n"
        f"file libtf.tar.gz {hashlib.sha256(data).hexdigest()} {DEAD_URL}\n"
        f"url index - file://{folder / 'libtf.tar.gz'}\n"
    )
    return folder, lock, data


class TestTheJetsonLock:
    def test_names_every_artifact_the_dockerfile_fetches_or_clones(self) -> None:
        text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
        defaults = dockerfile_defaults()
        used = re.findall(r"fetch-artifacts\.sh (?:fetch \S+ \S+|clone \S+) (\S+)", text)
        assert len(used) == 7
        for name in used:
            name = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m[1]], name.strip('"'))
            assert name in lock_entries(), name

    def test_pins_the_jetson_redisai_release_and_its_tensorflow_archives(self) -> None:
        entries = lock_entries()
        assert dockerfile_defaults()["AI_VER"] == "1.2.4"
        assert entries["RedisAI-1.2.4"][2:] == [
            "53efa2693ef01d2ad67cc01fdee1e0667fdfed0d",
            "https://github.com/RedisAI/RedisAI.git",
            "v1.2.4",
        ]
        s3 = "https://s3.amazonaws.com/redismodules/tensorflow/"
        for name in ("libtensorflow-gpu-jetson-linux-arm64-2.4.0.tar.gz", "libtensorflowlite-linux-arm64-2.0.0.tar.gz"):
            assert entries[name][0] == "file" and entries[name][3] == s3 + name

    def test_every_pin_is_a_sha256_or_a_commit_or_marked_unpinned(self) -> None:
        for name, (kind, _, pin, url, *_) in lock_entries().items():
            assert kind in {"file", "git", "sub", "url"}, name
            assert url.startswith("https://") or url.startswith("http://ports.ubuntu.com/"), name
            assert pin == "-" or re.fullmatch(r"[0-9a-f]{64}" if kind == "file" else r"[0-9a-f]{40}", pin), name

    def test_names_every_submodule_the_recursive_clones_fetch_at_its_pinned_commit(self) -> None:
        # .gitmodules of RedisAI v1.2.4 and RedisGears v1.2.12 (read in their repositories)
        expected = {
            "RedisAI-1.2.4": {"opt/readies", "opt/googletest"},
            "RedisGears-1.2.12": {"deps/cpython", "deps/readies", "deps/libevent", "deps/hiredis"},
        }
        subs: dict[str, set[str]] = {}
        for name, (kind, _, pin, *_) in lock_entries().items():
            if kind == "sub":
                parent, path = name.split("/", 1)
                assert lock_entries()[parent][0] == "git" and re.fullmatch(r"[0-9a-f]{40}", pin), name
                subs.setdefault(parent, set()).add(path)
        assert subs == expected

    def test_checks_the_apt_repositories_the_builder_installs_from(self) -> None:
        urls = {row[3] for row in lock_entries().values() if row[0] == "url"}
        assert "http://ports.ubuntu.com/ubuntu-ports/dists/bionic/Release" in urls
        assert {"https://repo.download.nvidia.com/jetson/common/dists/r32.7/Release"} <= urls
        assert "https://pypi.org/simple/numpy/" in urls

    def test_redisais_setup_script_with_its_unpinnable_downloads_is_not_run(self) -> None:
        commands = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
        assert not [line for line in commands if "opt/system-setup.py" in line or "opt/readies/bin/getpy3" in line]
        # what it would have installed from apt for the module build is installed directly
        joined = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
        assert re.search(r"apt-get install [^\n]*gawk patchelf", joined)

    def test_the_check_runs_before_anything_is_compiled(self) -> None:
        builder = re.split(r"(?m)^FROM ", DOCKERFILE.read_text())[-2]
        assert builder.index("fetch-artifacts.sh check artifacts-jetson.lock") < builder.index("make ")
        assert "COPY --from=artifacts / /artifacts/" in builder and "ARG ARTIFACTS_URL=" in builder
        assert re.search(r"(?m)^FROM scratch AS artifacts$", DOCKERFILE.read_text())


class TestTheCheck:
    def test_passes_when_each_file_is_supplied_or_reachable(self, supplied: tuple[Path, Path, bytes]) -> None:
        folder, lock, _ = supplied
        result = run("check", str(lock), ARTIFACTS_DIR=str(folder))
        assert result.returncode == 0, result.stderr
        assert f"ok libtf.tar.gz: {folder}/libtf.tar.gz" in result.stdout

    def test_fails_in_seconds_naming_the_url_and_what_to_do(self, supplied: tuple[Path, Path, bytes]) -> None:
        _, lock, _ = supplied
        started = time.monotonic()
        result = run("check", str(lock))
        assert time.monotonic() - started < 15
        assert result.returncode == 3
        assert f"MISSING libtf.tar.gz: {DEAD_URL}: " in result.stderr
        assert "1 artifact(s)" in result.stderr and "invoke build --artifacts DIR" in result.stderr
        assert "--build-arg ARTIFACTS_URL=" in result.stderr

    def test_a_mirror_replaces_upstream(self, supplied: tuple[Path, Path, bytes]) -> None:
        folder, lock, _ = supplied
        result = run("check", str(lock), ARTIFACTS_URL=f"file://{folder}")
        assert result.returncode == 0, result.stderr
        assert f"ok libtf.tar.gz: file://{folder}/libtf.tar.gz" in result.stdout


class TestFetch:
    def test_copies_a_supplied_file_whose_sha256_matches(
        self, supplied: tuple[Path, Path, bytes], tmp_path: Path
    ) -> None:
        folder, lock, data = supplied
        result = run("fetch", str(lock), str(tmp_path / "out"), "libtf.tar.gz", ARTIFACTS_DIR=str(folder))
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "out" / "libtf.tar.gz").read_bytes() == data

    def test_downloads_from_a_mirror_and_verifies_it(self, supplied: tuple[Path, Path, bytes], tmp_path: Path) -> None:
        folder, lock, data = supplied
        result = run("fetch", str(lock), str(tmp_path / "out"), "libtf.tar.gz", ARTIFACTS_URL=f"file://{folder}")
        assert result.returncode == 0, result.stderr
        assert f"from file://{folder}/libtf.tar.gz" in result.stdout

    def test_refuses_a_file_that_differs_from_the_pin(self, supplied: tuple[Path, Path, bytes], tmp_path: Path) -> None:
        folder, lock, _ = supplied
        (folder / "libtf.tar.gz").write_bytes(b"something else")
        result = run("fetch", str(lock), str(tmp_path / "out"), "libtf.tar.gz", ARTIFACTS_DIR=str(folder))
        assert result.returncode == 3
        assert "the lock pins" in result.stderr and "get the original file" in result.stderr
        assert not (tmp_path / "out" / "libtf.tar.gz").exists()

    def test_refuses_an_unpinned_supplied_file_and_prints_its_sha256(self, tmp_path: Path) -> None:
        (tmp_path / "x.tgz").write_bytes(b"x")
        lock = tmp_path / "l.lock"
        lock.write_text(f"file x.tgz - {DEAD_URL}\n")
        result = run("fetch", str(lock), str(tmp_path / "out"), "x.tgz", ARTIFACTS_DIR=str(tmp_path))
        assert result.returncode == 3
        assert f"has no pinned sha256; put {hashlib.sha256(b'x').hexdigest()} into {lock}" in result.stderr

    def test_names_the_fix_for_an_artifact_missing_from_the_lock(self, supplied: tuple[Path, Path, bytes]) -> None:
        _, lock, _ = supplied
        result = run("fetch", str(lock), "/tmp/never", "redis-9.9.9.tar.gz")
        assert result.returncode == 3
        assert f"redis-9.9.9.tar.gz is not in {lock}; add a line for it" in result.stderr


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=60).stdout


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    """A local git repository with a tag v1.0, and the tag's commit."""
    source = tmp_path / "src"
    source.mkdir()
    git("init", "-q", cwd=source)
    (source / "README").write_text("module\n")
    git("add", "README", cwd=source)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one", cwd=source)
    git("tag", "v1.0", cwd=source)
    return source, git("rev-parse", "HEAD", cwd=source).strip()


class TestClone:
    def test_clones_the_tag_at_the_pinned_commit(self, repo: tuple[Path, str], tmp_path: Path) -> None:
        source, commit = repo
        lock = tmp_path / "l.lock"
        lock.write_text(f"git Mod-1.0 {commit} file://{source} v1.0\n")
        assert run("check", str(lock)).returncode == 0
        result = run("clone", str(lock), "Mod-1.0", str(tmp_path / "out"))
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "out" / "README").read_text() == "module\n"

    def test_refuses_a_tag_that_moved(self, repo: tuple[Path, str], tmp_path: Path) -> None:
        source, _ = repo
        lock = tmp_path / "l.lock"
        lock.write_text(f"git Mod-1.0 {'0' * 40} file://{source} v1.0\n")
        result = run("clone", str(lock), "Mod-1.0", str(tmp_path / "out"))
        assert result.returncode == 3 and "the tag moved" in result.stderr

    def test_verifies_each_submodule_the_lock_pins(self, repo: tuple[Path, str], tmp_path: Path) -> None:
        library, library_commit = repo
        parent = tmp_path / "parent"
        parent.mkdir()
        git("init", "-q", cwd=parent)
        git("-c", "protocol.file.allow=always", "submodule", "add", "-q", f"file://{library}", "deps/lib", cwd=parent)
        git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "with lib", cwd=parent)
        git("tag", "v2.0", cwd=parent)
        commit = git("rev-parse", "HEAD", cwd=parent).strip()
        allow_file = {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "protocol.file.allow",
            "GIT_CONFIG_VALUE_0": "always",
        }
        lock = tmp_path / "l.lock"
        head = f"git Mod-2.0 {commit} file://{parent} v2.0\n"
        lock.write_text(head + f"sub Mod-2.0/deps/lib {library_commit} file://{library}\n")
        assert run("check", str(lock), **allow_file).returncode == 0
        result = run("clone", str(lock), "Mod-2.0", str(tmp_path / "out"), **allow_file)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "out" / "deps" / "lib" / "README").read_text() == "module\n"

        lock.write_text(head + f"sub Mod-2.0/deps/lib {'1' * 40} file://{library}\n")
        result = run("clone", str(lock), "Mod-2.0", str(tmp_path / "again"), **allow_file)
        assert result.returncode == 3
        assert f"submodule deps/lib of Mod-2.0 is at {library_commit}, the lock pins {'1' * 40}" in result.stderr

    def test_the_check_reports_an_unreachable_submodule(self, repo: tuple[Path, str], tmp_path: Path) -> None:
        source, commit = repo
        lock = tmp_path / "l.lock"
        lock.write_text(f"sub Mod-1.0/deps/gone {commit} file://{tmp_path}/gone\n")
        result = run("check", str(lock))
        assert result.returncode == 3
        assert f"MISSING Mod-1.0/deps/gone: file://{tmp_path}/gone (submodule deps/gone of Mod-1.0)" in result.stderr

    def test_the_check_reports_a_missing_tag(self, repo: tuple[Path, str], tmp_path: Path) -> None:
        source, commit = repo
        lock = tmp_path / "l.lock"
        lock.write_text(f"git Mod-2.0 {commit} file://{source} v2.0\n")
        result = run("check", str(lock))
        assert result.returncode == 3 and f"MISSING Mod-2.0: file://{source} (v2.0): no ref v2.0" in result.stderr
