"""The metrics-server the real node runs on demand (node/metrics_server.py)."""

from __future__ import annotations

from typing import Any

from stackforge_operator.devcluster.node import metrics_server
from stackforge_operator.devcluster.node.services import DNS_NAMESPACE
from stackforge_operator.models.common import parse_quantity


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in metrics_server.manifests() if d["kind"] == kind]


def _args() -> list[str]:
    [deployment] = _by_kind("Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    args: list[str] = container["args"]
    return args


def test_the_api_service_leads_to_the_service_that_selects_its_pods() -> None:
    [api_service], [service], [deployment] = (
        _by_kind("APIService"), _by_kind("Service"), _by_kind("Deployment"))
    assert api_service["metadata"]["name"] == metrics_server.API_SERVICE == \
        f"{api_service['spec']['version']}.{api_service['spec']['group']}"
    assert api_service["spec"]["service"] == {
        "name": service["metadata"]["name"], "namespace": service["metadata"]["namespace"],
        "port": service["spec"]["ports"][0]["port"]}
    template = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    [container] = template["spec"]["containers"]
    assert container["ports"][0]["name"] == service["spec"]["ports"][0]["targetPort"]
    assert container["image"] == metrics_server.METRICS_SERVER_IMAGE


def test_the_kubelets_certificate_is_verified_against_the_cluster_ca() -> None:
    args = _args()
    assert "--kubelet-insecure-tls" not in args
    assert any(a.startswith("--kubelet-certificate-authority=/var/run/secrets/") for a in args)


def test_the_scrape_timeout_is_shorter_than_the_resolution_as_it_must_be() -> None:
    """metrics-server exits at start otherwise (seen on the real node)."""
    flags = dict(a.removeprefix("--").split("=", 1) for a in _args() if "=" in a)
    resolution = parse_quantity(flags["metric-resolution"].removesuffix("s"))
    timeout = parse_quantity(flags["kubelet-request-timeout"].removesuffix("s"))
    assert resolution >= 10 and timeout < resolution


def test_its_account_may_read_kubelet_metrics_and_delegate_authentication() -> None:
    roles = {d["metadata"]["name"]: d for d in _by_kind("ClusterRole")}
    rules = roles["system:metrics-server"]["rules"]
    assert {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]} in rules
    bound = {(d["kind"], d["roleRef"]["name"]) for d in
             [*_by_kind("ClusterRoleBinding"), *_by_kind("RoleBinding")]}
    assert bound == {("ClusterRoleBinding", "system:metrics-server"),
                     ("ClusterRoleBinding", "system:auth-delegator"),
                     ("RoleBinding", "extension-apiserver-authentication-reader")}
    for binding in [*_by_kind("ClusterRoleBinding"), *_by_kind("RoleBinding")]:
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "metrics-server",
                                        "namespace": DNS_NAMESPACE}]
