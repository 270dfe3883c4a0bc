"""shared.config: settings are read from the environment by their real types, and a type that cannot be
read is refused at start-up with a clear ConfigError."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from services.receiver.config import Settings as ReceiverSettings
from services.status_api.config import Settings as StatusSettings
from services.verifier.config import Settings as VerifierSettings
from shared.config import CommonSettings
from shared.errors import ConfigError


@dataclass(frozen=True, slots=True)
class WithFlag(CommonSettings):
    feature_on: bool = False
    ratio: float = 0.5


@dataclass(frozen=True, slots=True)
class WithDict(CommonSettings):
    limits: dict[str, int] | None = None


def test_each_type_is_read_from_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATUS_API_PORT", "9001")
    monkeypatch.setenv("SSE_HEARTBEAT_S", "2.5")
    monkeypatch.setenv("STATUS_API_TOKEN", " one-token , another-token ,")
    monkeypatch.setenv("REDIS_PREFIX", "12")  # a str stays a str, even when it looks like a number
    settings = StatusSettings.from_env()
    assert settings.status_api_port == 9001
    assert settings.sse_heartbeat_s == 2.5
    assert settings.status_api_token == ("one-token", "another-token")
    assert settings.redis_prefix == "12"


@pytest.mark.parametrize(("raw", "expected"), [("yes", True), ("0", False), ("TRUE", True), ("off", False)])
def test_booleans(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    monkeypatch.setenv("FEATURE_ON", raw)
    assert WithFlag.from_env().feature_on is expected


@pytest.mark.parametrize(("name", "raw"), [("FEATURE_ON", "maybe"), ("RATIO", "half"), ("RECEIVER_PORT", "80a")])
def test_a_value_of_the_wrong_type_names_its_variable(monkeypatch: pytest.MonkeyPatch, name: str, raw: str) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigError, match=name):
        (ReceiverSettings if name == "RECEIVER_PORT" else WithFlag).from_env()


def test_a_type_that_cannot_be_read_fails_at_start_up_even_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIMITS", raising=False)
    with pytest.raises(ConfigError, match=r"setting limits of WithDict has type .*dict\[str, int\]"):
        WithDict.from_env()


def test_every_services_settings_can_be_read() -> None:
    for settings in (ReceiverSettings, StatusSettings, VerifierSettings):
        assert settings.from_env().redis_prefix


def test_the_verifier_refuses_a_retry_ceiling_that_is_not_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORE_RETRY_MAX_S", "0")
    with pytest.raises(ConfigError, match="STORE_RETRY_MAX_S"):
        VerifierSettings.from_env()
