"""Alerts and dashboards: promtool checks the rules and runs their unit tests (deploy/prometheus/
alerts_test.yml), checks the Prometheus config compose uses, and parses every dashboard query as PromQL.
Every alert has a unit test and a runbook section; every metric they use is documented."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_metrics import documented

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "hookstatus.json"
METRIC = re.compile(r"\b(hookstatus_[a-z_]+)")
SUFFIXES = ("_bucket", "_count", "_sum")


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is needed (Debian: apt-get install prometheus; `make test` installs it)"
    return path


def run(promtool: str, *args: str, cwd: Path = PROM) -> str:
    done = subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_exprs() -> list[str]:
    data = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in data["panels"] for t in p.get("targets", [])]


def base_name(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in documented():
            return name.removesuffix(suffix)
    return name


def test_rules_pass_promtool_check(promtool: str) -> None:
    out = run(promtool, "check", "rules", "alerts.yml")
    assert f"SUCCESS: {len(alerts())} rules found" in out


def test_alert_unit_tests_pass(promtool: str) -> None:
    out = run(promtool, "test", "rules", "alerts_test.yml")
    assert "SUCCESS" in out


def test_prometheus_config_scrapes_every_service_and_loads_the_rules(promtool: str) -> None:
    out = run(promtool, "check", "config", "prometheus.yml")
    assert "SUCCESS: 1 rule files found" in out
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {"receiver": ["receiver:8083"], "status_api": ["status_api:8081"],
                       "verifier": ["verifier:8082"], "notifier": ["notifier:8084"]}


def test_every_alert_is_tested_and_has_a_runbook() -> None:
    cases = yaml.safe_load((PROM / "alerts_test.yml").read_text())["tests"]
    tested = {c["alertname"] for test in cases for c in test.get("alert_rule_test", []) if c["exp_alerts"]}
    operations = (ROOT / "docs" / "OPERATIONS.md").read_text()
    names = [rule["alert"] for rule in alerts()]
    assert len(names) >= 8
    for rule in alerts():
        assert rule["alert"] in tested, f"{rule['alert']} never fires in alerts_test.yml"
        assert rule["annotations"]["runbook"] == f"docs/OPERATIONS.md#{rule['alert'].lower()}"
        assert f"### {rule['alert']}" in operations, f"docs/OPERATIONS.md has no section for {rule['alert']}"


def test_alerts_and_dashboard_only_use_documented_metrics() -> None:
    table = documented()
    exprs = [r["expr"] for r in alerts()] + dashboard_exprs()
    used = {base_name(m) for expr in exprs for m in METRIC.findall(expr)}
    assert used - set(table) == set()
    # the dashboard shows every documented family somewhere
    assert set(table) - used - {"hookstatus_sse_dropped_total", "hookstatus_analytics_dropped_total"} == set()


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    data = json.loads(DASHBOARD.read_text())
    assert data["uid"] == "hookstatus" and data["panels"]
    exprs = dashboard_exprs()
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(exprs)]}]}
    (tmp_path / "dashboard_rules.yml").write_text(yaml.safe_dump(rules))
    out = run(promtool, "check", "rules", "dashboard_rules.yml", cwd=tmp_path)
    assert f"SUCCESS: {len(exprs)} rules found" in out


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    provider = yaml.safe_load((provisioning / "dashboards" / "hookstatus.yml").read_text())["providers"][0]
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in compose["grafana"]["volumes"]}
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in compose
    assert compose["prometheus"]["volumes"][0].startswith("./deploy/prometheus:/etc/prometheus")
