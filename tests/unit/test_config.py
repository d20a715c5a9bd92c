"""gearcam.config: defaults, then invoke.yaml, then the environment; loud failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from gearcam.config import REDIS_PORT, load_settings, redact_url
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
