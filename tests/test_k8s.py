"""Kubernetes manifests (deploy/k8s): every object validates against the Kubernetes JSON schemas in
strict mode (the schemas ship in the ``kubernetes-validate`` package from PyPI, so the check runs
offline), and a focused check of what matters to run the services: probes, resources, disruption
budgets, autoscalers, and settings that the services really read."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from services.notifier.config import Settings as NotifierSettings
from services.receiver.config import Settings as ReceiverSettings
from services.status_api.config import Settings as StatusSettings
from services.verifier.config import Settings as VerifierSettings

K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"  # the oldest minor release still widely supported when this was written
SETTINGS = {"receiver": ReceiverSettings, "verifier": VerifierSettings, "status-api": StatusSettings,
            "notifier": NotifierSettings}
PORTS = {"receiver": 8080, "verifier": 8082, "status-api": 8081, "notifier": 8084}
# Where Prometheus scrapes /metrics: the receiver's admin listener, off its provider-facing port.
METRICS_PORTS = {**PORTS, "receiver": 8083}


def objects() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects() if o["kind"] == kind}


def container(name: str) -> dict[str, Any]:
    [c] = by_kind("Deployment")[name]["spec"]["template"]["spec"]["containers"]
    return c  # type: ignore[no-any-return]


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("obj", objects(), ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_object_matches_the_kubernetes_schema(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)  # raises on any error


def test_schema_check_rejects_a_broken_object() -> None:
    """The check has teeth: a misspelt field and a wrong type are refused."""
    broken = by_kind("Deployment")["receiver"]
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    typo = by_kind("Service")["receiver"]
    typo["spec"]["selectr"] = typo["spec"].pop("selector")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name", sorted(PORTS))
def test_deployment_probes_resources_and_shutdown(name: str) -> None:
    deployment = by_kind("Deployment")[name]
    pod = deployment["spec"]["template"]["spec"]
    c = container(name)
    assert c["ports"][0] == {"name": "http", "containerPort": PORTS[name], "protocol": "TCP"}
    if name == "receiver":  # the admin listener: a container port, never a Service port
        assert c["ports"][1:] == [{"name": "admin", "containerPort": METRICS_PORTS[name], "protocol": "TCP"}]
    else:
        assert len(c["ports"]) == 1
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    for kind in ("requests", "limits"):
        assert set(c["resources"][kind]) == {"cpu", "memory"}
    assert c["command"] == ["python", "-m", f"services.{name.replace('-', '_')}"]
    assert pod["terminationGracePeriodSeconds"] > 5 + 5  # app shutdown timeout + preStop pause
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert deployment["spec"]["replicas"] >= 2
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    service = by_kind("Service")[name]
    assert service["spec"]["selector"] == selector
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


@pytest.mark.parametrize("name", ["receiver", "verifier"])
def test_receiver_and_verifier_have_a_disruption_budget_and_an_autoscaler(name: str) -> None:
    selector = by_kind("Deployment")[name]["spec"]["selector"]["matchLabels"]
    pdb = by_kind("PodDisruptionBudget")[name]
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    assert pdb["spec"]["minAvailable"] >= 1
    hpa = by_kind("HorizontalPodAutoscaler")[name]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"]  # a drain can always proceed


@pytest.mark.parametrize("name", sorted(PORTS))
def test_every_variable_is_a_real_setting_and_secrets_come_from_a_secret(name: str) -> None:
    known = {f.name.upper() for f in dataclasses.fields(SETTINGS[name])}
    c = container(name)
    [ref] = c["envFrom"]
    config = by_kind("ConfigMap")[ref["configMapRef"]["name"]]
    env = {e["name"]: e for e in c["env"]}
    assert set(config["data"]) | set(env) <= known
    for secret in ("AMQP_URL", "REDIS_URL"):
        assert env[secret]["valueFrom"]["secretKeyRef"] == {"name": "hookstatus-secrets", "key": secret}
    assert not {"AMQP_URL", "REDIS_URL", "STATUS_API_TOKEN", "TOKEN_SIGNING_KEY", "SECRETS_KEYS"} & set(config["data"])
    annotations = by_kind("Deployment")[name]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(METRICS_PORTS[name])
