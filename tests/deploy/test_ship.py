"""gearcam/ship and the build/push/deploy/undeploy/logs tasks: the exact commands, checked without Docker or k3s.

There is no Docker engine, cluster or SSH host here, so the tasks run against invoke's MockContext,
which answers only the commands the test expects (anything else raises), and the tests check the
exact command lines and their order.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from invoke.context import MockContext
from invoke.exceptions import Exit
from invoke.runners import Result

import tasks
from gearcam.config import PROJECT_ROOT, Settings, load_settings
from gearcam.errors import CallerError, ConfigError
from gearcam.ship import (
    Artifacts,
    Step,
    StepFailed,
    build_commands,
    deploy_steps,
    logs_commands,
    preflight_commands,
    push_commands,
    run_steps,
    versions,
)
from gearcam.ship import kube as ship_kube
from gearcam.ship.kube import undeploy_steps

ROOT = Path("/src/gearcam")


def settings(tmp_path: Path, **environ: str) -> Settings:
    return load_settings(yaml_path=tmp_path / "none.yaml", environ=environ)


@pytest.fixture(autouse=True)
def _no_invoke_yaml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tasks load the settings themselves: give them only the defaults (plus GEARCAM_* set by a test)."""
    real = tasks.load_settings
    monkeypatch.setattr(tasks, "load_settings", lambda **kw: real(yaml_path=tmp_path / "none.yaml", **kw))
    monkeypatch.setattr(ship_kube, "DEPLOY_DIR", tmp_path / "deploy")
    for name in list(__import__("os").environ):
        if name.startswith("GEARCAM_"):
            monkeypatch.delenv(name)


class TestBuildCommands:
    def test_the_jetson_image_gets_redisai_1_2_4_and_x64_keeps_1_2_7(self, tmp_path: Path) -> None:
        ship = settings(tmp_path).ship
        assert "--build-arg AI_VER=1.2.4 " in build_commands(ship, "arm64v8", root=ROOT)[0]
        assert "--build-arg AI_VER=1.2.7 " in build_commands(ship, "x64", root=ROOT)[0]

    def test_supplied_artifacts_reach_only_the_image_with_a_lock(self, tmp_path: Path) -> None:
        supplied = Artifacts(tmp_path, "https://mirror.local/redisai")
        jetson, app = build_commands(settings(tmp_path).ship, "arm64v8", root=ROOT, artifacts=supplied)
        assert jetson.endswith(
            f" --build-arg ARTIFACTS_URL=https://mirror.local/redisai --build-context artifacts={tmp_path}"
            " --tag gearcam/redis-jetson:0.1.0-arm64v8 --load /src/gearcam"
        )
        assert "ARTIFACTS" not in app and "--build-context" not in app

    def test_an_artifacts_folder_that_does_not_exist_is_refused_with_the_fix(self, tmp_path: Path) -> None:
        with pytest.raises(CallerError, match="is not a folder; give the folder holding the lock's files"):
            build_commands(settings(tmp_path).ship, "arm64v8", artifacts=Artifacts(tmp_path / "absent"))

    def test_the_preflight_checks_the_jetson_lock_with_the_supplied_sources(self, tmp_path: Path) -> None:
        assert preflight_commands("arm64v8", Artifacts(Path("/a"), "https://m"), root=ROOT) == [
            "env ARTIFACTS_DIR=/a ARTIFACTS_URL=https://m /src/gearcam/docker/fetch-artifacts.sh check"
            " /src/gearcam/docker/artifacts-jetson.lock"
        ]
        assert preflight_commands("x64", root=ROOT) == []

    def test_plan_b_builds_only_the_app_for_arm64_and_checks_no_module_artifacts(self, tmp_path: Path) -> None:
        ship = settings(tmp_path).ship
        (app,) = build_commands(ship, "arm64v8", root=ROOT, only="app")
        assert app == (
            "docker buildx build --platform linux/arm64 --file /src/gearcam/docker/Dockerfile.app"
            " --tag gearcam/app:0.1.0-arm64v8 --load /src/gearcam"
        )
        assert preflight_commands("arm64v8", root=ROOT, only="app") == []
        assert versions(ship, "arm64v8", only="app") == (
            "arm64v8: the app image only (runtime overlay: stock redis:7.2.5 behind the gearcam runtime, CPU)"
        )

    def test_only_an_image_the_architecture_has_is_accepted(self, tmp_path: Path) -> None:
        with pytest.raises(
            CallerError, match="--only 'redis' is not an image of arm64v8; choose one of: redis-jetson, app"
        ):
            build_commands(settings(tmp_path).ship, "arm64v8", only="redis")

    def test_arm64v8_builds_the_jetson_redis_and_the_app_for_linux_arm64(self, tmp_path: Path) -> None:
        assert build_commands(settings(tmp_path).ship, "arm64v8", root=ROOT) == [
            "docker buildx build --platform linux/arm64 --file /src/gearcam/docker/Dockerfile.jetson"
            " --build-arg REDIS_VER=6.2.14 --build-arg AI_VER=1.2.4 --build-arg GEARS_VER=1.2.12"
            " --build-arg ARCH=arm64v8 --build-arg OSNICK=bionic --build-arg L4T_VER=r32.7.1"
            " --tag gearcam/redis-jetson:0.1.0-arm64v8 --load /src/gearcam",
            "docker buildx build --platform linux/arm64 --file /src/gearcam/docker/Dockerfile.app"
            " --tag gearcam/app:0.1.0-arm64v8 --load /src/gearcam",
        ]

    def test_x64_builds_the_x64_redis_and_the_app_for_linux_amd64(self, tmp_path: Path) -> None:
        assert build_commands(settings(tmp_path).ship, "x64", root=ROOT) == [
            "docker buildx build --platform linux/amd64 --file /src/gearcam/docker/Dockerfile.redis"
            " --build-arg REDIS_VER=6.2.14 --build-arg AI_VER=1.2.7 --build-arg GEARS_VER=1.2.12"
            " --build-arg ARCH=x64 --build-arg OSNICK=focal --tag gearcam/redis:0.1.0-x64 --load /src/gearcam",
            "docker buildx build --platform linux/amd64 --file /src/gearcam/docker/Dockerfile.app"
            " --tag gearcam/app:0.1.0-x64 --load /src/gearcam",
        ]

    def test_push_tags_with_the_registry_and_pushes_instead_of_loading(self, tmp_path: Path) -> None:
        ship = settings(tmp_path, GEARCAM_SHIP__REGISTRY="reg.lan:5000/", GEARCAM_SHIP__TAG="2").ship
        commands = build_commands(ship, "x64", push=True, root=ROOT)
        assert [c.split(" --tag ")[1] for c in commands] == [
            "reg.lan:5000/gearcam/redis:2-x64 --push /src/gearcam",
            "reg.lan:5000/gearcam/app:2-x64 --push /src/gearcam",
        ]
        assert push_commands(ship, "arm64v8") == [
            "docker push reg.lan:5000/gearcam/redis-jetson:2-arm64v8",
            "docker push reg.lan:5000/gearcam/app:2-arm64v8",
        ]

    def test_pushing_without_a_registry_says_how_to_set_one(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="GEARCAM_SHIP__REGISTRY"):
            push_commands(settings(tmp_path).ship, "x64")

    def test_an_unknown_arch_lists_the_choices(self, tmp_path: Path) -> None:
        with pytest.raises(CallerError, match="arm64v8, x64"):
            build_commands(settings(tmp_path).ship, "arm32v7")


DEPLOY_JETSON = [
    (
        "label node jetson-nano",
        "kubectl --context default label node jetson-nano gearcam.io/device=jetson-nano --overwrite",
    ),
    (
        "copy gearcam/redis-jetson:0.1.0-arm64v8 to jetson",
        "set -o pipefail && docker save gearcam/redis-jetson:0.1.0-arm64v8 | ssh jetson docker load",
    ),
    (
        "copy gearcam/app:0.1.0-arm64v8 to jetson",
        "set -o pipefail && docker save gearcam/app:0.1.0-arm64v8 | ssh jetson docker load",
    ),
    (
        "remove the previous loader Job",
        "kubectl --context default -n gearcam delete job gearcam-loader --ignore-not-found",
    ),
    ("apply overlay jetson-nano", "kubectl --context default apply -k {work}"),
    (
        "wait for the DaemonSet gearcam",
        "kubectl --context default -n gearcam rollout status daemonset/gearcam --timeout=600s",
    ),
    (
        "wait for the loader Job gearcam-loader",
        "kubectl --context default -n gearcam wait --for=condition=complete job/gearcam-loader --timeout=600s",
    ),
    (
        "check the Gears registration",
        "kubectl --context default -n gearcam exec daemonset/gearcam -c redis -- redis-cli -p 6379 RG.DUMPREGISTRATIONS",
    ),
]


class TestDeploySteps:
    def test_deploy_jetson_runs_these_steps_in_this_order(self, tmp_path: Path) -> None:
        steps = deploy_steps(settings(tmp_path), "jetson", work_dir=tmp_path / "w")
        assert [(s.name, s.command) for s in steps] == [
            (name, command.format(work=tmp_path / "w")) for name, command in DEPLOY_JETSON
        ]
        assert [s.expect for s in steps] == [None] * 7 + ["StreamReader"]

    def test_a_registry_host_pushes_instead_of_copying_over_ssh(self, tmp_path: Path) -> None:
        s = settings(
            tmp_path, GEARCAM_SHIP__REGISTRY="reg.lan:5000",
            GEARCAM_SHIP__HOSTS__BOX__SSH="box", GEARCAM_SHIP__HOSTS__BOX__NODE="box1",
            GEARCAM_SHIP__HOSTS__BOX__ARCH="x64", GEARCAM_SHIP__HOSTS__BOX__SHIP="registry",
        )  # fmt: skip
        commands = [s.command for s in deploy_steps(s, "box", work_dir=tmp_path)]
        assert commands[0] == "kubectl label node box1 gearcam.io/device=x64 --overwrite"  # no context: current one
        assert commands[1:3] == [
            "docker push reg.lan:5000/gearcam/redis:0.1.0-x64",
            "docker push reg.lan:5000/gearcam/app:0.1.0-x64",
        ]

    def test_the_runtime_overlay_ships_the_app_and_the_stock_redis_for_the_hosts_arch(self, tmp_path: Path) -> None:
        names = [s.name for s in deploy_steps(settings(tmp_path), "jetson", overlay="runtime", work_dir=tmp_path)]
        assert names[:5] == [
            "label node jetson-nano",
            "pull redis:7.2.5",
            "copy gearcam/app:0.1.0-arm64v8 to jetson",
            "copy redis:7.2.5 to jetson",
            "remove the previous loader Job",
        ]
        pull = deploy_steps(settings(tmp_path), "jetson", overlay="runtime", work_dir=tmp_path)[1].command
        assert pull == "docker pull --platform linux/arm64 redis:7.2.5"

    def test_an_overlay_for_another_arch_is_refused_before_anything_runs(self, tmp_path: Path) -> None:
        with pytest.raises(CallerError, match="overlay 'x64' runs x64 images but the host is arm64v8"):
            deploy_steps(settings(tmp_path), "jetson", overlay="x64")

    def test_an_unknown_host_lists_the_configured_ones(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"unknown host 'nano2' \(configured: jetson\)"):
            deploy_steps(settings(tmp_path), "nano2")

    def test_undeploy_deletes_the_namespace_then_the_label(self, tmp_path: Path) -> None:
        assert [s.command for s in undeploy_steps(settings(tmp_path), "jetson")] == [
            "kubectl --context default delete namespace gearcam --ignore-not-found --wait=true",
            "kubectl --context default label node jetson-nano gearcam.io/device-",
        ]

    def test_logs_show_every_container_or_one_or_the_loader(self, tmp_path: Path) -> None:
        s = settings(tmp_path)
        prefix = "kubectl --context default -n gearcam logs"
        assert logs_commands(s, "jetson") == [
            f"{prefix} daemonset/gearcam --tail=100 --timestamps --all-containers --prefix"
        ]
        assert logs_commands(s, "jetson", container="redis", follow=True, tail=5) == [
            f"{prefix} daemonset/gearcam --tail=5 --timestamps -c redis --follow"
        ]
        assert logs_commands(s, "jetson", loader=True) == [f"{prefix} job/gearcam-loader --tail=100 --timestamps"]


class TestRunSteps:
    def test_it_stops_at_the_first_failing_step_and_names_it(self) -> None:
        steps = [Step("one", "true", "-"), Step("two", "false", "look at two"), Step("three", "echo 3", "-")]
        c = MockContext(run={"true": True, "false": Result(exited=3)})  # "echo 3" is never expected
        with pytest.raises(StepFailed) as caught:
            run_steps(c, steps, "t")
        assert str(caught.value) == "step 2/3 'two' failed (exit 3): `false`; check: look at two"
        assert [call.args[0] for call in c.run.call_args_list] == ["true", "false"]

    def test_a_step_whose_output_lacks_the_expected_text_fails(self) -> None:
        c = MockContext(run={"check": Result(stdout="(empty array)\n")})
        with pytest.raises(StepFailed, match="does not show 'StreamReader'"):
            run_steps(c, [Step("check", "check", "hint", expect="StreamReader")], "t")

    def test_a_dry_run_does_not_check_the_output_it_cannot_have(self) -> None:
        c = MockContext(run={"check": Result(stdout="")})
        run_steps(c, [Step("check", "check", "hint", expect="StreamReader")], "t", dry=True)


def ok(stdout: str = "") -> Result:
    return Result(stdout=stdout, exited=0)


REGISTRATION = '1) "id"\n2) "0000-1"\n3) "reader"\n4) "StreamReader"\n'


class TestTasks:
    def test_build_checks_the_artifacts_then_runs_both_buildx_commands_and_shows_the_versions(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        preflight = preflight_commands("arm64v8")
        c = MockContext(
            run={
                re.compile(r"docker buildx build --platform linux/arm64 .*"): ok(),
                re.compile(re.escape(preflight[0])): ok(),
            }
        )
        tasks.build(c, arch="arm64v8", tag="t1")
        commands = [call.args[0] for call in c.run.call_args_list]
        ship = tasks.load_settings().ship.model_copy(update={"tag": "t1"})
        assert commands == [*preflight, *build_commands(ship, "arm64v8")]
        assert "build: arm64v8: Redis 6.2.14, RedisAI 1.2.4 (TF 2.4.0 (Jetson GPU build), TFLite 2.0.0)" in (
            capsys.readouterr().out
        )

    def test_a_missing_artifact_stops_the_build_before_docker_runs(self) -> None:
        c = MockContext(run={re.compile(r".*fetch-artifacts\.sh check .*"): Result(exited=3)})
        with pytest.raises(Exit, match=r"fetch-artifacts\.sh check .* failed .*MISSING line above names the URL"):
            tasks.build(c, arch="arm64v8")
        assert len(c.run.call_args_list) == 1

    def test_the_dry_run_prints_the_versions_of_each_architecture(self, capsys: pytest.CaptureFixture[str]) -> None:
        for arch, line in (
            ("arm64v8", "RedisAI 1.2.4 (TF 2.4.0 (Jetson GPU build), TFLite 2.0.0), RedisGears 1.2.12, L4T r32.7.1"),
            ("x64", "RedisAI 1.2.7 (TF 2.8.0, TFLite 2.0.0, ONNX Runtime 1.11.1), RedisGears 1.2.12, Ubuntu focal"),
        ):
            c = MockContext(run={re.compile(".*"): ok()})
            tasks.build(c, arch=arch, dry_run=True)
            assert line in capsys.readouterr().out
            assert c.config.run.dry

    def test_plan_b_builds_the_arm64_app_image_alone_without_the_module_artifact_check(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        c = MockContext(run={re.compile(r"docker buildx build --platform linux/arm64 .*Dockerfile\.app .*"): ok()})
        tasks.build(c, arch="arm64v8", only="app")
        (command,) = [call.args[0] for call in c.run.call_args_list]
        assert "--tag gearcam/app:0.1.0-arm64v8" in command
        assert "build: arm64v8: the app image only" in capsys.readouterr().out

    def test_build_push_without_a_registry_exits_with_the_fix(self) -> None:
        with pytest.raises(Exit, match="no registry configured"):
            tasks.build(MockContext(), arch="x64", push=True)

    def test_a_failing_build_names_the_command_and_how_to_cross_build(self) -> None:
        c = MockContext(run={re.compile(r"docker buildx build .*"): Result(exited=1)})
        with pytest.raises(Exit, match=r"Dockerfile.redis .* failed .*tonistiigi/binfmt"):
            tasks.build(c, arch="x64")

    def test_deploy_jetson_runs_every_step_in_order_and_writes_its_kustomization(self, tmp_path: Path) -> None:
        work = tmp_path / "deploy" / "jetson"
        expected = [command.format(work=work) for _, command in DEPLOY_JETSON]
        c = MockContext(run={re.compile(re.escape(cmd) + "$"): ok(REGISTRATION) for cmd in expected})
        tasks.deploy(c, host="jetson")
        assert [call.args[0] for call in c.run.call_args_list] == expected
        assert "jetson-nano" in (work / "kustomization.yaml").read_text()
        assert (work / "redis-password").stat().st_mode & 0o777 == 0o600

    @pytest.mark.parametrize("failing", range(len(DEPLOY_JETSON)))
    def test_deploy_stops_at_a_failing_step_and_says_which_and_what_to_check(
        self, tmp_path: Path, failing: int
    ) -> None:
        work = tmp_path / "deploy" / "jetson"
        expected = [command.format(work=work) for _, command in DEPLOY_JETSON]
        results = {re.compile(re.escape(cmd) + "$"): ok(REGISTRATION) for cmd in expected[:failing]}
        results[re.compile(re.escape(expected[failing]) + "$")] = Result(exited=1)
        c = MockContext(run=results)
        with pytest.raises(Exit) as caught:
            tasks.deploy(c, host="jetson")
        message = str(caught.value.message)
        name = DEPLOY_JETSON[failing][0]
        assert message.startswith(f"deploy to jetson stopped: step {failing + 1}/8 '{name}' failed (exit 1)")
        assert "; check: " in message
        assert len(c.run.call_args_list) == failing + 1  # nothing after the failing step ran

    def test_deploy_fails_when_the_node_shows_no_registration(self, tmp_path: Path) -> None:
        work = tmp_path / "deploy" / "jetson"
        expected = [command.format(work=work) for _, command in DEPLOY_JETSON]
        c = MockContext(run={re.compile(re.escape(cmd) + "$"): ok("(empty array)") for cmd in expected})
        with pytest.raises(Exit, match=r"step 8/8 'check the Gears registration' failed .*loader's log"):
            tasks.deploy(c, host="jetson")

    def test_deploy_dry_run_prints_the_steps_and_does_not_check_output_it_cannot_have(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        # MockContext does not implement dry runs itself: it answers with the empty output a dry run gives.
        c = MockContext(run={re.compile(".*"): ok()})
        tasks.deploy(c, host="jetson", dry_run=True)
        assert c.config.run.dry is True
        out = capsys.readouterr().out
        assert "deploy: [1/8] label node jetson-nano" in out and "deploy: [8/8] check the Gears registration" in out

    def test_deploy_to_an_unknown_host_exits_naming_the_configured_ones(self) -> None:
        with pytest.raises(Exit, match="unknown host 'pi'.*configured: jetson"):
            tasks.deploy(MockContext(), host="pi")

    def test_undeploy_and_logs_run_their_commands(self) -> None:
        c = MockContext(run={re.compile(r"kubectl .*"): ok()})
        tasks.undeploy(c, host="jetson")
        tasks.logs(c, host="jetson", container="camera")
        assert [call.args[0] for call in c.run.call_args_list][-1] == (
            "kubectl --context default -n gearcam logs daemonset/gearcam --tail=100 --timestamps -c camera"
        )


def test_the_default_configuration_defines_the_jetson_example_host() -> None:
    host = load_settings(yaml_path=PROJECT_ROOT / "invoke.yaml", environ={}).ship.hosts["jetson"]
    assert (host.ssh, host.node, host.arch) == ("jetson", "jetson-nano", "arm64v8")


def test_the_commented_example_in_invoke_yaml_is_valid_and_matches_the_default(tmp_path: Path) -> None:
    text = (PROJECT_ROOT / "invoke.yaml").read_text()
    start = text.index("# gearcam:\n")
    lines = text[start:].splitlines()
    example = [re.sub(r"^# ?", "", line) for line in lines if line.startswith("#")]
    (tmp_path / "example.yaml").write_text("\n".join(example) + "\n")
    loaded = load_settings(yaml_path=tmp_path / "example.yaml", environ={}).ship
    assert loaded.hosts == load_settings(yaml_path=tmp_path / "none.yaml", environ={}).ship.hosts
    assert loaded.registry == "registry.lan:5000"
