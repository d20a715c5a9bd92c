"""gearcam.config: defaults, then invoke.yaml, then the environment; loud failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from gearcam.addresses import connect_host
from gearcam.config import PROJECT_ROOT, REDIS_PORT, Settings, bind_addresses, load_settings, redact_url
from gearcam.errors import ConfigError


def test_defaults_match_the_architecture(tmp_path: Path) -> None:
    settings = load_settings(yaml_path=tmp_path / "absent.yaml", environ={})
    assert settings.redis_url == "redis://localhost:6379"
    assert settings.runtime.port == REDIS_PORT == 6379
    assert settings.runtime.backing_port == 6380
    assert settings.runtime.threads_per_queue == 1


def test_invoke_yaml_overrides_defaults_and_the_environment_overrides_both(tmp_path: Path) -> None:
    path = tmp_path / "invoke.yaml"
    path.write_text("run: {echo: true}\ngearcam:\n  runtime:\n    port: 7000\n    threads_per_queue: 3\n")
    settings = load_settings(yaml_path=path, environ={"GEARCAM_RUNTIME__PORT": "7100"})
    assert settings.runtime.port == 7100
    assert settings.runtime.threads_per_queue == 3


def test_redis_url_is_read_from_the_well_known_variable(tmp_path: Path) -> None:
    settings = load_settings(yaml_path=tmp_path / "none.yaml", environ={"REDIS_URL": "redis://node:6390"})
    assert settings.redis_url == "redis://node:6390"


def test_flags_are_the_top_tier(tmp_path: Path) -> None:
    settings = load_settings(yaml_path=tmp_path / "none.yaml", environ={"GEARCAM_RUNTIME__PORT": "7100"},
                             runtime={"port": 7200})  # fmt: skip
    assert settings.runtime.port == 7200


def test_an_unknown_key_is_refused_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="runtime.threads_per_queu"):
        load_settings(yaml_path=tmp_path / "none.yaml", environ={"GEARCAM_RUNTIME__THREADS_PER_QUEU": "2"})


def test_a_bad_value_is_refused_with_the_key_and_the_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"runtime.threads_per_queue='zero'"):
        load_settings(yaml_path=tmp_path / "none.yaml", environ={"GEARCAM_RUNTIME__THREADS_PER_QUEUE": "zero"})


def test_a_broken_yaml_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "invoke.yaml"
    path.write_text("gearcam: [unclosed\n")
    with pytest.raises(ConfigError, match="invoke.yaml"):
        load_settings(yaml_path=path, environ={})


def test_redact_url_hides_the_password_only() -> None:
    assert redact_url("redis://user:s3cret@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact_url("redis://host:6379") == "redis://host:6379"


def test_the_projects_invoke_yaml_is_valid_and_repeats_no_default() -> None:
    assert load_settings(yaml_path=PROJECT_ROOT / "invoke.yaml", environ={}) == Settings()


def test_the_port_variable_is_cast_to_an_int(tmp_path: Path) -> None:
    settings = load_settings(yaml_path=tmp_path / "none.yaml", environ={"GEARCAM_RUNTIME__PORT": "7100"})
    assert settings.runtime.port == 7100


def test_an_unknown_key_in_invoke_yaml_is_refused_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "invoke.yaml"
    path.write_text("gearcam:\n  runtime:\n    prot: 7000\n")
    with pytest.raises(ConfigError, match=r"runtime\.prot=7000"):
        load_settings(yaml_path=path, environ={})


def test_an_out_of_range_port_is_refused_with_the_bound(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"runtime\.port='70000'.*65535"):
        load_settings(yaml_path=tmp_path / "none.yaml", environ={"GEARCAM_RUNTIME__PORT": "70000"})


def test_a_gearcam_section_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "invoke.yaml"
    path.write_text("gearcam: [1, 2]\n")
    with pytest.raises(ConfigError, match="'gearcam' must be a mapping"):
        load_settings(yaml_path=path, environ={})


def test_redact_url_hides_a_password_without_a_user_and_in_unix_urls() -> None:
    assert redact_url("redis://:s3cret@host:6379") == "redis://:***@host:6379"
    assert redact_url("unix://:s3cret@/run/redis.sock") == "unix://:***@/run/redis.sock"
    assert "s3cret" not in redact_url("rediss://default:s3cret@host")


def test_stream_and_port_set_the_web_page_and_target_classes_are_checked(tmp_path: Path) -> None:
    settings = load_settings(yaml_path=tmp_path / "none.yaml", environ={"STREAM": "cats", "PORT": "3001"})
    assert (settings.web.stream, settings.web.port) == ("cats", 3001)
    assert settings.pipeline.target_classes == "281-285" and settings.camera.source == "samples"
    for bad in ("cat", "285-281", "1000"):
        with pytest.raises(ConfigError, match="pipeline.target_classes"):
            load_settings(yaml_path=tmp_path / "none.yaml", environ={"GEARCAM_PIPELINE__TARGET_CLASSES": bad})


def test_kubernetes_service_links_are_not_taken_for_settings(tmp_path: Path) -> None:
    environ = {"GEARCAM_WEB_PORT": "tcp://10.43.0.7:3000", "GEARCAM_WEB_SERVICE_HOST": "10.43.0.7",
               "GEARCAM_RUNTIME__PORT": "7100"}  # fmt: skip
    settings = load_settings(yaml_path=tmp_path / "none.yaml", environ=environ)
    assert settings.runtime.port == 7100 and settings.web.port == 3000


def test_runtime_host_is_redis_bind_list(tmp_path: Path) -> None:
    """redis.conf's `bind 127.0.0.1 -::1` is the default: '-' marks an address the machine may lack, '*' and '::*'
    are every IPv4 and IPv6 address, at most 16 (Redis' limit), and clients go to the first."""
    settings = load_settings(yaml_path=tmp_path / "none.yaml", environ={})
    assert settings.runtime.host == "127.0.0.1 -::1" and settings.redis_url == "redis://localhost:6379"
    assert bind_addresses(settings.runtime.host) == [("127.0.0.1", False), ("::1", True)]
    assert bind_addresses("* -::*") == [("0.0.0.0", False), ("::", True)]
    assert bind_addresses("") == [("", False)]  # every address, as before lists
    moved = load_settings(yaml_path=tmp_path / "none.yaml", environ={"GEARCAM_RUNTIME__HOST": "::1 -127.0.0.1"})
    assert moved.redis_url == "redis://[::1]:6379"
    assert (connect_host("::1 -127.0.0.1"), connect_host("* -::*"), connect_host("::*")) == ("::1", "127.0.0.1", "::1")
    for wrong, said in ((" ".join(["127.0.0.1"] * 17), "Too many bind addresses specified."),
                        ("127.0.0.1 -", "'-' names no address")):  # fmt: skip
        with pytest.raises(ConfigError, match=said):
            load_settings(yaml_path=tmp_path / "none.yaml", environ={"GEARCAM_RUNTIME__HOST": wrong})
