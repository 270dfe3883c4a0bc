"""The catalog is read and checked once: every bad entry is a ConfigError naming the entry and the
field; a deployment's extra file (PROVIDER_CATALOG_EXTRA) adds presets without a code change; the
generated table in docs/PROVIDERS.md is fresh."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scripts import provider_catalog_doc
from shared.errors import ConfigError
from shared.providers import PROVIDERS
from shared.providers.base import InboundRequest
from shared.providers.catalog import build, load, parse
from shared.providers.catalog_spec import parse_entry

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "id": "acme", "title": "Acme", "category": "payments", "family": "hmac",
    "docs": "https://docs.acme.example/webhooks", "checked_against": "scheme:https://docs.acme.example/webhooks",
    "secret": "issued", "secret_format": "the signing secret", "scheme": "hex HMAC-SHA256",
    "test_instructions": "Send a test event.", "setup": ["Paste the URL."],
    "signature": {"at": ["header:Acme-Signature"]},
}


@pytest.mark.parametrize(("change", "field"), [
    ({"family": "rsa"}, "family"),
    ({"category": "gardening"}, "category"),
    ({"docs": "http://insecure.example"}, "docs"),
    ({"checked_against": "trust me"}, "checked_against"),
    ({"setup": []}, "setup"),
    ({"signature": {"at": ["header:Bad Header"]}}, "at"),
    ({"signature": {"at": ["header:X"], "algorithm": "md5"}}, "algorithm"),
    ({"signature": {"at": ["header:X"], "template": "{timestamp}.{body}"}}, "timestamp"),
    ({"timestamp": {"at": "header:X-Ts"}}, "at"),
    ({"event_id": "cookie:x"}, "event_id"),
    ({"colour": "blue"}, "colour"),
    ({"signature": None, "family": "token"}, "token"),
    ({"handshake": {"kind": "x", "when": [], "description": "d"}}, "when"),
    ({"handshake": {"kind": "x", "when": ["method=PUT"], "description": "d"}}, "when"),
])
def test_a_bad_entry_names_the_entry_and_the_field(change: dict[str, object], field: str) -> None:
    raw = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        parse_entry(raw, 0, "extra.toml")
    assert "provider 'acme'" in str(caught.value) and repr(field) in str(caught.value), str(caught.value)


def test_an_id_taken_twice_is_refused() -> None:
    catalog = parse({"provider": [GOOD, GOOD]}, "extra.toml")
    with pytest.raises(ConfigError, match="'acme' is used twice"):
        build(catalog, {})
    with pytest.raises(ConfigError, match="'github' is used twice"):
        build(parse({"provider": [{**GOOD, "id": "github"}]}, "extra.toml"), PROVIDERS)


def test_an_unreadable_extra_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(str(tmp_path / "missing.toml"))
    broken = tmp_path / "broken.toml"
    broken.write_text("[[provider]\nid = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(str(broken))


def test_a_deployment_adds_a_preset_with_an_extra_file(tmp_path: Path) -> None:
    extra = tmp_path / "extra.toml"
    extra.write_text(textwrap.dedent('''
        [[provider]]
        id = "acme-billing"
        title = "Acme Billing"
        category = "payments"
        family = "hmac"
        docs = "https://docs.acme.example/webhooks"
        checked_against = "scheme:https://docs.acme.example/webhooks"
        secret = "issued"
        secret_format = "the endpoint's signing secret"
        scheme = "hex HMAC-SHA256(secret, timestamp + '.' + body)"
        signature = { at = ["header:Acme-Signature"], template = "{timestamp}.{body}", prefix = "v1=" }
        timestamp = { at = "header:Acme-Timestamp", tolerance_s = 300 }
        event_id = "json:/id"
        test_instructions = "Send a test event."
        setup = ["Paste the webhook URL.", "Reconnect with the signing secret."]
    '''))
    script = textwrap.dedent('''
        import hashlib, hmac, time
        from shared.providers import PROVIDERS
        from shared.providers.base import InboundRequest
        p = PROVIDERS["acme-billing"]
        ts, body = str(int(time.time())), b'{"id":"evt_1"}'
        sig = "v1=" + hmac.new(b"acme-secret-1", ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        v = p.verify(InboundRequest("POST", "u", {"Acme-Signature": sig, "Acme-Timestamp": ts}, {}, body),
                     "acme-secret-1", {}, time.time())
        print(len(PROVIDERS), p.info.category, v.event_id)
    ''')
    env = {**os.environ, "PROVIDER_CATALOG_EXTRA": str(extra)}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [str(len(PROVIDERS) + 1), "payments", "acme-billing:evt_1"]
    extra.write_text(extra.read_text().replace('family = "hmac"', 'family = "hmac2"'))
    failed = subprocess.run([sys.executable, "-c", "import shared.providers"], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert failed.returncode != 0 and "provider 'acme-billing', field 'family'" in failed.stderr


def test_the_catalog_table_in_the_docs_is_fresh() -> None:
    current = provider_catalog_doc.DOC.read_text(encoding="utf-8")
    assert provider_catalog_doc.rendered(current) == current, "run python -m scripts.provider_catalog_doc"


def test_every_catalog_provider_has_setup_steps_category_and_docs() -> None:
    for provider in PROVIDERS.values():
        info = provider.info
        assert info.category and info.setup and info.docs_url.startswith("https://"), provider.name


def test_an_event_id_outside_the_signature_is_not_trusted() -> None:
    """GitLab's X-Gitlab-Event-UUID is not signed (GitLab signs nothing): the body's fingerprint goes
    beside it, so a replayed body under a fresh id is still the same delivery."""
    gitlab = PROVIDERS["gitlab"]
    body = b'{"object_kind":"push"}'
    first = gitlab.verify(InboundRequest("POST", "u", {"X-Gitlab-Token": "tok-12345678", "X-Gitlab-Event-UUID": "a"},
                                         {}, body), "tok-12345678", {}, 0)
    again = gitlab.verify(InboundRequest("POST", "u", {"X-Gitlab-Token": "tok-12345678", "X-Gitlab-Event-UUID": "b"},
                                         {}, body), "tok-12345678", {}, 0)
    assert (first.event_id, again.event_id) == ("gitlab:a", "gitlab:b")
    assert first.fingerprint == again.fingerprint and first.fingerprint and first.fingerprint.startswith("sha256:")
    signed = PROVIDERS["mux"]  # Mux's id is in the signed body: no fingerprint needed beside it
    assert signed.entry.event_id is not None and signed.entry.event_id.kind == "json"  # type: ignore[attr-defined]
