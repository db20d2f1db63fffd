"""deploy/k8s/network-policies.yaml: ingress denied by default, allowed back edge by edge.

The policies are evaluated here as the network plugin would (pod and namespace label
selectors, ports), over every workload of the namespace and a few pods outside it, so the
whole access matrix is checked, not the wording of the files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deploy.files import container_environment, kustomizations, manifests, one, pod_spec

pytestmark = pytest.mark.unit

NAME = "app.kubernetes.io/name"
NAMESPACE_NAME = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Pod:
    """A possible client: its namespace and labels."""

    namespace: str
    labels: tuple[tuple[str, str], ...]

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


def namespace() -> str:
    (namespace,) = {k["namespace"] for k in kustomizations().values() if "namespace" in k}
    return str(namespace)


def template_labels(doc: dict[str, Any]) -> dict[str, str]:
    return dict(doc["spec"]["template"]["metadata"]["labels"])


def pod_of(doc: dict[str, Any]) -> Pod:
    """A pod of the workload ``doc``, in the application's namespace."""
    return Pod(namespace(), tuple(sorted(template_labels(doc).items())))


def workload_pods() -> dict[str, Pod]:
    """Every pod template of the application, by workload name (the Job's included)."""
    return {m.name: pod_of(m.doc) for m in manifests() if m.kind in ("Deployment", "StatefulSet", "Job")}


# Pods outside the namespace: where the policies expect Prometheus, the ingress controller and
# KEDA's operator (with its metrics server beside it), a pod of another application, and one
# that labels itself as the orchestrator elsewhere.
OUTSIDE = {
    "prometheus": Pod("monitoring", ((NAME, "prometheus"),)),
    "ingress-controller": Pod("ingress-nginx", ((NAME, "ingress-nginx"),)),
    "keda-operator": Pod("keda", (("app", "keda-operator"), (NAME, "keda-operator"))),
    "keda-metrics-server": Pod("keda", (("app", "keda-operator-metrics-apiserver"),)),
    "stranger": Pod("default", ((NAME, "something-else"),)),
    "impostor": Pod("default", ((NAME, "orchestrator"),)),
}

# (client, workload, container port): everything that may connect, and nothing else.
EXPECTED = {
    ("ingress-controller", "orchestrator", 8000),
    ("prometheus", "orchestrator", 8000),
    ("prometheus", "search", 8100),
    ("prometheus", "triton", 8002),
    ("orchestrator", "search", 8100),
    ("orchestrator", "triton", 8001),
    ("orchestrator", "triton", 8002),
    ("orchestrator", "redis", 6379),
    ("worker", "search", 8100),
    ("worker", "triton", 8001),
    ("worker", "redis", 6379),
    ("keda-operator", "redis", 6379),
}

# The settings each client dials. The worker runs jobs, not rollouts: model control and drains
# (Triton's control addresses, its metrics) are the API's.
DIALED = {
    "orchestrator": (
        "FACEREC_TRITON__URL",
        "FACEREC_TRITON__CONTROL_URLS",
        "FACEREC_TRITON__METRICS_URL",
        "REDIS_URL",
        "FACEREC_SEARCH_URLS",
    ),
    "worker": ("FACEREC_TRITON__URL", "REDIS_URL", "FACEREC_SEARCH_URLS"),
}


def clients() -> dict[str, Pod]:
    return {**workload_pods(), **OUTSIDE}


def policies() -> list[dict[str, Any]]:
    return [m.doc for m in manifests() if m.kind == "NetworkPolicy"]


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels is modelled here"
    return dict(selector.get("matchLabels", {})).items() <= labels.items()


def selects(policy: dict[str, Any], pod: Pod) -> bool:
    return pod.namespace == namespace() and matches(policy["spec"]["podSelector"], pod.label_map)


def peer_admits(peer: dict[str, Any], client: Pod) -> bool:
    assert set(peer) <= {"podSelector", "namespaceSelector"}, f"unmodelled peer {peer}"
    if "namespaceSelector" in peer:
        in_namespace = matches(peer["namespaceSelector"], {NAMESPACE_NAME: client.namespace})
    else:
        in_namespace = client.namespace == namespace()  # a bare podSelector: this namespace
    return in_namespace and matches(peer.get("podSelector", {}), client.label_map)


def allowed(target: Pod, client: Pod, port: int) -> bool:
    """Whether ``client`` may connect to ``port`` of ``target`` (TCP)."""
    selecting = [p for p in policies() if selects(p, target) and "Ingress" in p["spec"]["policyTypes"]]
    if not selecting:
        return True  # not isolated
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            ports = rule.get("ports")
            if ports is not None and not any(
                p.get("protocol", "TCP") == "TCP" and p["port"] == port for p in ports
            ):
                continue
            if "from" not in rule or any(peer_admits(peer, client) for peer in rule["from"]):
                return True
    return False


def service_workload(service: str) -> dict[str, Any]:
    selector = one("Service", service)["spec"]["selector"]
    (doc,) = [
        m.doc
        for m in manifests()
        if m.kind in ("Deployment", "StatefulSet") and selector.items() <= template_labels(m.doc).items()
    ]
    return doc


def service_pod(service: str) -> Pod:
    return pod_of(service_workload(service))


def workload_name(service: str) -> str:
    """The workload behind a Service (``triton`` behind both ``triton`` and ``triton-headless``)."""
    return str(service_workload(service)["metadata"]["name"])


def container_ports(service: str) -> dict[str, int]:
    """Port name -> number, over the containers of the Service's pods."""
    return {
        p["name"]: p["containerPort"]
        for c in pod_spec(service_workload(service))["containers"]
        for p in c.get("ports", [])
    }


def target_port(service: str, port: int) -> int:
    """The container port behind ``port`` of the Service."""
    (spec,) = [p for p in one("Service", service)["spec"]["ports"] if p["port"] == port]
    target = spec.get("targetPort", port)
    return container_ports(service)[target] if isinstance(target, str) else int(target)


def configured_addresses(client: str = "orchestrator") -> list[tuple[str, int]]:
    """(Service, port) of every address the client's configuration sends it to."""
    env = container_environment(one("Deployment", client), client)
    urls = []
    for name in DIALED[client]:
        value = str(env[name])
        values = json.loads(value) if value.startswith("[") else [value]
        # Triton's gRPC addresses are host:port, without a scheme.
        urls += [v if "://" in v else f"grpc://{v}" for v in values]
    found = []
    for url in urls:
        parts = urlsplit(url)
        assert parts.hostname and parts.port, url
        # search-0.search: a pod of the headless Service `search`.
        found.append((parts.hostname.split(".")[-1], parts.port))
    return found


SERVICES = sorted(m.name for m in manifests() if m.kind == "Service")


def test_ingress_is_denied_by_default() -> None:
    deny = [p for p in policies() if p["spec"]["podSelector"] == {}]
    assert len(deny) == 1 and deny[0]["spec"]["policyTypes"] == ["Ingress"]
    assert not deny[0]["spec"].get("ingress"), "the catch-all policy must allow nothing"


def test_every_rule_names_its_clients_and_ports() -> None:
    """An empty `from` admits every source, a missing `ports` every port: neither is used."""
    for policy in policies():
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from") and rule.get("ports"), policy["metadata"]["name"]


@pytest.mark.parametrize("service", SERVICES)
def test_every_services_pods_are_selected_by_an_allow_policy(service: str) -> None:
    pod = service_pod(service)
    allowing = [
        p for p in policies() if p["spec"]["podSelector"] and selects(p, pod) and p["spec"].get("ingress")
    ]
    assert allowing, f"the pods of Service {service} are only denied"


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_accepts_exactly_the_expected_clients(service: str) -> None:
    target = service_pod(service)
    for name, client in clients().items():
        for port in container_ports(service).values():
            want = (name, workload_name(service), port) in EXPECTED
            assert allowed(target, client, port) == want, f"{name} -> {service}:{port} should be {want}"


@pytest.mark.parametrize("service", ["search", "triton"])
def test_search_and_triton_take_the_orchestrator_and_prometheus_on_metrics_only(service: str) -> None:
    target = service_pod(service)
    metrics_port = int(
        service_workload(service)["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]
    )
    for name, client in clients().items():
        reachable = {port for port in container_ports(service).values() if allowed(target, client, port)}
        if name in DIALED:
            # Exactly the ports its configuration names: Triton's HTTP control port is not one.
            assert reachable == {
                target_port(s, port) for s, port in configured_addresses(name) if workload_name(s) == service
            }, name
        elif name == "prometheus":
            assert reachable == {metrics_port}
        else:
            assert not reachable, f"{name} reaches {service} on {sorted(reachable)}"


@pytest.mark.parametrize("client", list(DIALED))
def test_each_client_reaches_every_address_it_is_configured_with(client: str) -> None:
    pod = workload_pods()[client]
    addresses = configured_addresses(client)
    assert {workload_name(service) for service, _ in addresses} == {"triton", "search", "redis"}
    for service, port in addresses:
        assert allowed(service_pod(service), pod, target_port(service, port)), f"{service}:{port}"


def test_outbound_traffic_is_not_restricted() -> None:
    """The orchestrator and the workers reach PostgreSQL wherever it runs, outside this namespace."""
    for policy in policies():
        assert policy["spec"]["policyTypes"] == ["Ingress"], policy["metadata"]["name"]


def test_keda_reads_the_job_lists_on_the_port_its_triggers_name() -> None:
    (scaled,) = [m.doc for m in manifests() if m.kind == "ScaledObject"]
    for trigger in scaled["spec"]["triggers"]:
        address = urlsplit(f"//{trigger['metadata']['address']}")
        service = str(address.hostname).split(".")[0]
        port = target_port(service, int(address.port or 0))
        assert allowed(service_pod(service), OUTSIDE["keda-operator"], port), trigger["name"]


def test_prometheus_reaches_every_annotated_metrics_port() -> None:
    for manifest in manifests():
        if manifest.kind not in ("Deployment", "StatefulSet"):
            continue
        annotations = manifest.doc["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            assert allowed(
                pod_of(manifest.doc), OUTSIDE["prometheus"], int(annotations["prometheus.io/port"])
            ), manifest.name


@pytest.mark.parametrize("workload", ["models-fetch", "worker"])
def test_the_models_job_and_the_workers_take_no_connections(workload: str) -> None:
    pod = workload_pods()[workload]
    assert [p["metadata"]["name"] for p in policies() if selects(p, pod)] == ["default-deny-ingress"]
    for client in clients().values():
        assert not allowed(pod, client, 8000)
