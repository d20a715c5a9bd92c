"""deploy/: every overlay renders, validates offline against the Kubernetes schemas, and says what it must."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gearcam.config import PROJECT_ROOT, load_settings
from gearcam.ship import deploy_kustomization, prepare_deploy_dir
from tests.deploy.conftest import OVERLAYS, objects, render, tool

# The Kubernetes version to validate against: besides the library's newest, an older one, as a Jetson's
# k3s may lag behind.
OLD_K8S = "1.30.0"
CLIENTS = {"camera", "web-all", "web-cats", "loader", "notify", "record"}


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def containers(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in spec["template"]["spec"]["containers"]}


def env(container: dict[str, Any]) -> list[dict[str, Any]]:
    return list(container.get("env", []))


def validate(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [tool("kubernetes-validate"), "--strict", "--quiet", *extra, str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("overlay", OVERLAYS)
class TestEveryOverlay:
    def test_validates_strictly_against_the_kubernetes_schemas(
        self, overlay: str, rendered: dict[str, str], tmp_path: Path
    ) -> None:
        out = tmp_path / f"{overlay}.yaml"
        out.write_text(rendered[overlay])
        for extra in ((), ("-k", OLD_K8S)):
            result = validate(out, *extra)
            assert result.returncode == 0, result.stdout + result.stderr

    def test_the_daemonset_selects_its_own_pods_on_the_overlays_device_label(
        self, overlay: str, rendered: dict[str, str]
    ) -> None:
        ds = by_kind(objects(rendered[overlay]), "DaemonSet")
        template_labels = ds["spec"]["template"]["metadata"]["labels"]
        assert ds["spec"]["selector"]["matchLabels"].items() <= template_labels.items()
        assert ds["spec"]["template"]["spec"]["nodeSelector"]["gearcam.io/device"] == overlay
        job = by_kind(objects(rendered[overlay]), "Job")
        assert job["spec"]["template"]["spec"]["nodeSelector"]["gearcam.io/device"] == overlay

    def test_every_redis_client_takes_the_password_from_the_secret(
        self, overlay: str, rendered: dict[str, str]
    ) -> None:
        docs = objects(rendered[overlay])
        found = {**containers(by_kind(docs, "DaemonSet")["spec"]), **containers(by_kind(docs, "Job")["spec"])}
        clients = {name for name, c in found.items() if any(e["name"] == "REDIS_URL" for e in env(c))}
        expected = CLIENTS | ({"runtime"} if overlay == "runtime" else set())
        assert clients == expected
        for name in clients:
            names = [e["name"] for e in env(found[name])]
            password = env(found[name])[names.index("REDIS_PASSWORD")]
            assert password["valueFrom"]["secretKeyRef"] == {"name": "gearcam-redis", "key": "password"}, name
            url = env(found[name])[names.index("REDIS_URL")]["value"]
            # $(VAR) expands only from variables defined before it.
            assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL"), name
            assert url == "redis://:$(REDIS_PASSWORD)@127.0.0.1:6379", name

    def test_redis_listens_on_loopback_only_and_requires_the_password(
        self, overlay: str, rendered: dict[str, str]
    ) -> None:
        spec = by_kind(objects(rendered[overlay]), "DaemonSet")["spec"]
        assert spec["template"]["spec"]["hostNetwork"] is True
        redis = containers(spec)["redis"]
        assert "ports" not in redis  # nothing published on the node's addresses
        values = {e["name"]: e for e in env(redis)}
        assert values["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "gearcam-redis"
        assert values["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"]["name"] == "gearcam-redis"
        if overlay == "runtime":
            script = redis["command"][-1]
            assert "bind 127.0.0.1\\n" in script and "requirepass %s" in script
            runtime = containers(spec)["runtime"]
            assert runtime["command"][-4:] == ["--host", "127.0.0.1", "--port", "6379"]
            backing = {e["name"]: e for e in env(runtime)}["GEARCAM_RUNTIME__BACKING_URL"]["value"]
            assert backing == "redis://:$(REDIS_PASSWORD)@127.0.0.1:6380"
        else:
            assert values["REDIS_BIND"]["value"] == "127.0.0.1"

    def test_the_pages_on_the_node_addresses_need_the_token_of_the_web_secret(
        self, overlay: str, rendered: dict[str, str]
    ) -> None:
        spec = by_kind(objects(rendered[overlay]), "DaemonSet")["spec"]
        for name in ("web-all", "web-cats"):
            values = {e["name"]: e for e in env(containers(spec)[name])}
            assert values["GEARCAM_WEB__HOST"]["value"] == "0.0.0.0", name
            assert values["GEARCAM_WEB__TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "gearcam-web", "key": "token"}
            assert "GEARCAM_WEB__ANONYMOUS" not in values, name

    def test_the_recorder_writes_the_media_volume_and_the_pages_serve_it_read_only(
        self, overlay: str, rendered: dict[str, str]
    ) -> None:
        spec = by_kind(objects(rendered[overlay]), "DaemonSet")["spec"]
        pod, found = spec["template"]["spec"], containers(spec)
        media = {v["name"]: v for v in pod["volumes"]}["media"]
        assert media["hostPath"] == {"path": "/var/lib/gearcam/media", "type": "DirectoryOrCreate"}
        record = found["record"]
        assert record["command"] == ["python", "-m", "gearcam.record"]
        assert record["volumeMounts"] == [{"name": "media", "mountPath": "/media"}]
        for name in ("record", "web-all", "web-cats"):  # one data folder: what the recorder writes, /events finds
            values = {e["name"]: e.get("value") for e in env(found[name])}
            assert values["GEARCAM_RECORD__DATA_DIR"] == "/media", name
        for name in ("web-all", "web-cats"):
            assert found[name]["volumeMounts"] == [{"name": "media", "mountPath": "/media", "readOnly": True}], name
        owner = {c["name"]: c for c in pod["initContainers"]}["media-owner"]
        assert owner["command"] == ["chown", "10001:10001", "/media"] and owner["image"] == record["image"]
        assert record["securityContext"]["runAsNonRoot"] is True

    def test_every_container_has_requests_limits_and_the_servers_have_probes(
        self, overlay: str, rendered: dict[str, str]
    ) -> None:
        docs = objects(rendered[overlay])
        spec = by_kind(docs, "DaemonSet")["spec"]
        found = {**containers(spec), **containers(by_kind(docs, "Job")["spec"])}
        for name, c in found.items():
            assert {"cpu", "memory"} <= c["resources"]["requests"].keys(), name
            assert {"cpu", "memory"} <= c["resources"]["limits"].keys(), name
        for name in ("redis", "web-all", "web-cats", *(["runtime"] if overlay == "runtime" else [])):
            assert "readinessProbe" in found[name] and "livenessProbe" in found[name], name

    def test_the_loader_job_runs_the_loader_with_a_retry_limit_and_a_ttl(
        self, overlay: str, rendered: dict[str, str]
    ) -> None:
        job = by_kind(objects(rendered[overlay]), "Job")
        assert job["metadata"]["name"] == "gearcam-loader"
        assert 1 <= job["spec"]["backoffLimit"] <= 10
        assert job["spec"]["ttlSecondsAfterFinished"] > 0
        pod = job["spec"]["template"]["spec"]
        assert pod["restartPolicy"] == "Never" and pod["hostNetwork"] is True
        (loader,) = pod["containers"]
        assert loader["command"] == ["python", "-m", "gearcam.loader"]
        assert loader["args"] == ["--wait", "300"]


def memory_mib(value: str) -> float:
    units = {"Mi": 1, "Gi": 1024}
    return float(value[:-2]) * units[value[-2:]]


class TestJetsonNano:
    def test_it_runs_arm64_images_with_the_nvidia_runtime_class(self, rendered: dict[str, str]) -> None:
        docs = objects(rendered["jetson-nano"])
        pod = by_kind(docs, "DaemonSet")["spec"]["template"]["spec"]
        assert pod["runtimeClassName"] == "nvidia" == by_kind(docs, "RuntimeClass")["metadata"]["name"]
        assert pod["nodeSelector"]["kubernetes.io/arch"] == "arm64"
        images = {c["name"]: c["image"] for c in pod["containers"] + pod["initContainers"]}
        assert images["redis"] == "gearcam/redis-jetson:0.1.0-arm64v8"
        assert all(image.endswith("-arm64v8") for image in images.values()), images

    def test_its_memory_limits_fit_a_4_gb_nano(self, rendered: dict[str, str]) -> None:
        pod = by_kind(objects(rendered["jetson-nano"]), "DaemonSet")["spec"]["template"]["spec"]
        total = sum(memory_mib(c["resources"]["limits"]["memory"]) for c in pod["containers"])
        assert total <= 3 * 1024  # the OS and the GPU's share of the 4 GB need the rest

    def test_the_camera_gets_the_csi_camera_devices(self, rendered: dict[str, str]) -> None:
        spec = by_kind(objects(rendered["jetson-nano"]), "DaemonSet")["spec"]
        camera = containers(spec)["camera"]
        assert {m["mountPath"] for m in camera["volumeMounts"]} == {"/dev/video0", "/tmp/argus_socket"}
        volumes = {v["name"]: v["hostPath"] for v in spec["template"]["spec"]["volumes"]}
        assert volumes["argus-socket"] == {"path": "/tmp/argus_socket", "type": "Socket"}
        assert volumes["video0"] == {"path": "/dev/video0", "type": "CharDevice"}
        assert {e["name"]: e.get("value") for e in env(camera)}["GEARCAM_CAMERA__SOURCE"] == "csi:0"


class TestOtherOverlays:
    def test_x64_runs_x64_images_and_a_v4l2_camera_without_the_argus_socket(self, rendered: dict[str, str]) -> None:
        spec = by_kind(objects(rendered["x64"]), "DaemonSet")["spec"]
        pod = spec["template"]["spec"]
        assert "runtimeClassName" not in pod and pod["nodeSelector"]["kubernetes.io/arch"] == "amd64"
        assert {c["name"]: c["image"] for c in pod["containers"]}["redis"] == "gearcam/redis:0.1.0-x64"
        assert all(c["image"].endswith("-x64") for c in pod["containers"])
        assert [m["mountPath"] for m in containers(spec)["camera"]["volumeMounts"]] == ["/dev/video0"]
        assert "argus-socket" not in {v["name"] for v in pod["volumes"]}

    def test_runtime_runs_stock_redis_behind_the_runtime_and_needs_no_devices(self, rendered: dict[str, str]) -> None:
        spec = by_kind(objects(rendered["runtime"]), "DaemonSet")["spec"]
        found = containers(spec)
        assert found["redis"]["image"] == "redis:7.2.5"
        assert found["runtime"]["image"] == "gearcam/app:0.1.0-x64"
        assert found["runtime"]["command"][:3] == ["python", "-m", "gearcam.runtime"]
        assert not found["camera"].get("volumeMounts") and found["camera"]["securityContext"]["privileged"] is False
        assert {v["name"] for v in spec["template"]["spec"]["volumes"]} == {"data", "media"}


class TestTheDeployKustomization:
    def test_it_renders_the_overlay_with_the_hosts_registry_images_and_the_generated_secret(
        self, tmp_path: Path
    ) -> None:
        settings = load_settings(
            yaml_path=tmp_path / "none.yaml",
            environ={"GEARCAM_SHIP__REGISTRY": "registry.lan:5000", "GEARCAM_SHIP__TAG": "7"},
        )
        host = settings.ship.hosts["jetson"]
        work = prepare_deploy_dir(
            tmp_path / "jetson", deploy_kustomization(settings, host, "jetson-nano", tmp_path / "jetson")
        )
        password = (work / "redis-password").read_text()
        assert len(password) >= 32 and (work / "redis-password").stat().st_mode & 0o077 == 0
        docs = objects(render(work))
        pod = by_kind(docs, "DaemonSet")["spec"]["template"]["spec"]
        assert {c["image"] for c in pod["containers"]} == {
            "registry.lan:5000/gearcam/redis-jetson:7-arm64v8",
            "registry.lan:5000/gearcam/app:7-arm64v8",
        }
        secrets = {s["metadata"]["name"]: s for s in docs if s["kind"] == "Secret"}
        assert {s["metadata"]["namespace"] for s in secrets.values()} == {"gearcam"}
        assert base64.b64decode(secrets["gearcam-redis"]["data"]["password"]).decode() == password
        token = (work / "web-token").read_text()
        assert len(token) >= 32 and token != password and (work / "web-token").stat().st_mode & 0o077 == 0
        assert base64.b64decode(secrets["gearcam-web"]["data"]["token"]).decode() == token
        out = tmp_path / "all.yaml"
        out.write_text(yaml.safe_dump_all(docs))
        assert validate(out).returncode == 0

    def test_a_second_deploy_keeps_the_password(self, tmp_path: Path) -> None:
        settings = load_settings(yaml_path=tmp_path / "none.yaml", environ={})
        host = settings.ship.hosts["jetson"]
        first = prepare_deploy_dir(tmp_path / "d", deploy_kustomization(settings, host, "jetson-nano", tmp_path / "d"))
        before = (first / "redis-password").read_text()
        prepare_deploy_dir(tmp_path / "d", deploy_kustomization(settings, host, "jetson-nano", tmp_path / "d"))
        assert (first / "redis-password").read_text() == before


def test_the_schema_check_rejects_an_unknown_field(tmp_path: Path) -> None:
    """The validation above could fail: a misspelt field is an error under --strict."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}, "spce": {}}))
    assert validate(broken).returncode != 0


def test_every_overlay_is_listed_for_the_tests() -> None:
    assert sorted(p.name for p in (PROJECT_ROOT / "deploy" / "overlays").iterdir()) == sorted(OVERLAYS)


def test_the_runtime_overlay_deployed_to_the_jetson_runs_the_arm64_app_beside_stock_redis(tmp_path: Path) -> None:
    settings = load_settings(yaml_path=tmp_path / "none.yaml", environ={})
    host = settings.ship.hosts["jetson"]
    work = prepare_deploy_dir(tmp_path / "rt", deploy_kustomization(settings, host, "runtime", tmp_path / "rt"))
    pod = by_kind(objects(render(work)), "DaemonSet")["spec"]["template"]["spec"]
    images = {c["name"]: c["image"] for c in pod["containers"]}
    assert images.pop("redis") == "redis:7.2.5"
    assert set(images.values()) == {"gearcam/app:0.1.0-arm64v8"}


@pytest.mark.parametrize(
    "manifest",
    ["base/namespace.yaml", "base/daemonset.yaml", "base/loader-job.yaml", "overlays/jetson-nano/runtimeclass.yaml"],
)
def test_each_complete_manifest_validates_on_its_own_without_kubectl(manifest: str) -> None:
    """Where no kubectl renders the overlays, the base objects are still checked against the schemas."""
    result = validate(PROJECT_ROOT / "deploy" / manifest)
    assert result.returncode == 0, result.stdout + result.stderr
