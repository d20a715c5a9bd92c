"""docker/compose.yaml: every service a node runs, the same commands and data folder as the k3s manifests.

No Docker engine here: the file is read as YAML (merge keys resolved) and checked for what it must say.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from gearcam.config import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker" / "compose.yaml"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def test_the_notifier_and_the_recorder_run_beside_the_pages(services: dict[str, Any]) -> None:
    assert services["notify"]["command"] == ["python", "-m", "gearcam.notify"]
    assert services["record"]["command"] == ["python", "-m", "gearcam.record"]
    for name in ("notify", "record"):
        assert services[name]["image"] == services["camera"]["image"] == "gearcam/app:local", name
        assert services[name]["environment"]["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?"), name


def test_the_notifier_publishes_to_the_bundled_broker_unless_mqtt_url_names_another(services: dict[str, Any]) -> None:
    assert services["notify"]["environment"]["GEARCAM_EVENTS__MQTT_URL"] == "${MQTT_URL:-mqtt://mosquitto:1883}"
    broker = services["mosquitto"]
    assert "ports" not in broker  # on the compose network only
    assert "exec mosquitto -c /tmp/mosquitto.conf" in broker["command"][-1]
    assert "listener 1883 0.0.0.0" in broker["command"][-1]
    assert "mosquitto" in services["notify"]["depends_on"]


def test_the_recorder_writes_the_media_volume_that_the_pages_read(services: dict[str, Any]) -> None:
    assert services["record"]["volumes"] == ["media:/media"]
    assert services["record"]["environment"]["GEARCAM_RECORD__DATA_DIR"] == "/media"
    for name in ("web-all", "web-cats"):
        assert services[name]["volumes"] == ["media:/media:ro"], name
        assert services[name]["environment"]["GEARCAM_RECORD__DATA_DIR"] == "/media", name
    assert "media" in yaml.safe_load(COMPOSE.read_text())["volumes"]


def test_the_app_image_makes_media_writable_for_its_user() -> None:
    dockerfile = (PROJECT_ROOT / "docker" / "Dockerfile.app").read_text()
    assert "install -d -o 10001 -g 10001 /media" in dockerfile and "USER 10001:10001" in dockerfile
