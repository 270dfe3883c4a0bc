"""There is no Docker engine here, so docker-compose.yml is checked by reading it: it parses, names
what it must, and every variable it sets is a setting the service really reads."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from services.notifier.config import Settings as NotifierSettings
from services.receiver.config import Settings as ReceiverSettings
from services.status_api.config import Settings as StatusSettings
from services.verifier.config import Settings as VerifierSettings

ROOT = Path(__file__).resolve().parent.parent
APP_SETTINGS = {"receiver": ReceiverSettings, "verifier": VerifierSettings, "status_api": StatusSettings,
                "notifier": NotifierSettings}


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_compose_names_the_services_with_healthchecks() -> None:
    services = compose()["services"]
    assert {"rabbitmq", "redis", "receiver", "verifier", "status_api", "notifier"} <= set(services)
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"


def test_app_services_wait_for_healthy_servers_and_run_their_module() -> None:
    services = compose()["services"]
    for name in APP_SETTINGS:
        service = services[name]
        assert service["command"] == ["python", "-m", f"services.{name}"]
        deps = service["depends_on"]
        assert deps["rabbitmq"]["condition"] == "service_healthy"
        assert deps["redis"]["condition"] == "service_healthy"
        grace = int(service["stop_grace_period"].rstrip("s"))
        assert grace > 5, "the grace period must exceed the services' 5 s shutdown timeout"


def test_every_variable_compose_sets_is_a_real_setting() -> None:
    services = compose()["services"]
    for name, settings_cls in APP_SETTINGS.items():
        known = {f.name.upper() for f in dataclasses.fields(settings_cls)}
        unknown = set(services[name]["environment"]) - known
        assert not unknown, f"{name} sets variables it never reads: {sorted(unknown)}"


def test_redis_persists_with_aof() -> None:
    command = compose()["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"


def test_required_secrets_fail_fast() -> None:
    env = compose()["services"]["status_api"]["environment"]
    assert env["STATUS_API_TOKEN"].startswith("${STATUS_API_TOKEN:?")


def test_dockerfile_ships_the_packages_the_services_import() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for folder in ("shared", "services"):
        assert f"COPY {folder} ./{folder}" in dockerfile


def test_the_receiver_keeps_metrics_off_its_public_port() -> None:
    receiver = compose()["services"]["receiver"]
    assert receiver["environment"]["RECEIVER_ADMIN_PORT"] == "8083"
    # The provider-facing port is published; the admin listener only on the host's loopback.
    assert receiver["ports"] == ["8080:8080", "127.0.0.1:8083:8083"]
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in prometheus["scrape_configs"]}
    assert targets["receiver"] == ["receiver:8083"]
