"""Request bodies checked with the schema's models: each mistake is a 400 with its reason code, and a
message that names the field, never the value."""

from __future__ import annotations

import pytest

from services.status_api import schema
from services.status_api import validation as v
from shared.errors import BadRequest


def _code(raw: bytes, model: type[schema.RequestModel], **limits: int) -> tuple[str, str]:
    with pytest.raises(BadRequest) as err:
        v.parse(raw, model, limits)
    assert err.value.status == 400
    return err.value.code, err.value.message


def test_a_valid_body_becomes_the_model() -> None:
    new = v.parse(b'{"account_id": "acct_42", "provider": "stripe", "timeout_s": 60, "settings": {"a": 1}}',
                  schema.NewConnection)
    assert (new.account_id, new.provider, new.timeout_s, new.settings, new.secret) == (
        "acct_42", "stripe", 60, {"a": 1}, None)


def test_null_means_absent() -> None:
    new = v.parse(b'{"account_id": "a", "provider": "stripe", "timeout_s": null, "secret": null}',
                  schema.NewConnection)
    assert new.timeout_s is None and new.secret is None
    assert _code(b'{"account_id": "a", "provider": null}', schema.NewConnection)[0] == "missing_field"
    assert _code(b'{"account_id": null, "provider": "stripe"}', schema.NewConnection)[0] == "invalid_account_id"


def test_every_unknown_field_is_named() -> None:
    code, message = _code(b'{"account_id": "a", "provider": "x", "zeta": 1, "alpha": null}', schema.NewConnection)
    assert code == "unknown_field"
    assert message == "unknown field(s): alpha, zeta"


@pytest.mark.parametrize("value", [b'"60"', b"60.0", b"true", b"0", b"-5", b"3601"])
def test_durations_are_integers_within_the_configured_bounds(value: bytes) -> None:
    code, message = _code(b'{"timeout_s": ' + value + b"}", schema.NewTest, timeout_s=3600)
    assert code == "invalid_field"
    assert message.startswith("timeout_s: ")


def test_the_configured_bound_is_inclusive() -> None:
    assert v.parse(b'{"ttl_s": 3600}', schema.NewBrowserToken, {"ttl_s": 3600}).ttl_s == 3600
    assert "3600" in _code(b'{"ttl_s": 3601}', schema.NewBrowserToken, ttl_s=3600)[1]


def test_a_bad_secret_is_never_echoed() -> None:
    secret = "whsec_" + "x" * 5000
    code, message = _code(f'{{"secret": "{secret}"}}'.encode(), schema.Reconnect)
    assert code == "invalid_field"
    assert "xxxx" not in message and message.startswith("secret: ")


def test_the_first_field_in_the_models_order_is_reported() -> None:
    assert _code(b'{"account_id": "bad id!", "provider": 5}', schema.NewConnection)[0] == "invalid_account_id"
    assert _code(b'{"account_id": "a", "provider": 5, "settings": []}', schema.NewConnection)[0] == "invalid_field"
    assert _code(b'{"account_id": "a", "provider": "x", "settings": []}', schema.NewConnection)[0] == (
        "invalid_settings")


def test_account_ids_from_paths_and_queries() -> None:
    assert v.account_id("acct:1@x.y-z_") == "acct:1@x.y-z_"
    for bad in (None, "", "a" * 129, "has space", "new\nline", "trailing\n", 5):
        with pytest.raises(BadRequest) as err:
            v.account_id(bad)
        assert err.value.code == "invalid_account_id"
