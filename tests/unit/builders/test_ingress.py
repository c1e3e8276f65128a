from __future__ import annotations

import pytest

from stackforge_operator.builders import ingress
from stackforge_operator.models.tenant import TLSSpec
from tests.unit.builders.tenants import tenant

ISSUER = TLSSpec.model_validate({"issuerRef": {"name": "letsencrypt-prod"}})
NAMED = TLSSpec.model_validate({"secretName": "acme-cert"})


def test_no_domain_no_ingress() -> None:
    assert ingress.build(tenant({"domain": None}), ingress.tls_source(NAMED)) == []


def test_routes_the_domain_to_kong() -> None:
    [ing] = ingress.build(tenant())
    assert (ing["apiVersion"], ing["kind"], ing["metadata"]["name"]) == (
        "networking.k8s.io/v1",
        "Ingress",
        "tenant",
    )
    [rule] = ing["spec"]["rules"]
    assert rule["host"] == "acme.example.com"
    [path] = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    assert path["backend"]["service"] == {"name": "kong-proxy", "port": {"number": 80}}
    assert "tls" not in ing["spec"]
    assert "ingressClassName" not in ing["spec"]


def test_tls_from_a_named_secret() -> None:
    for tls in (NAMED, ingress.tls_source(NAMED)):
        [ing] = ingress.build(tenant(), tls)
        assert ing["spec"]["tls"] == [{"hosts": ["acme.example.com"], "secretName": "acme-cert"}]


def test_tls_from_an_issuer_uses_the_tenant_secret() -> None:
    [ing] = ingress.build(tenant(), ISSUER)
    assert ing["spec"]["tls"][0]["secretName"] == "acme-tls"
    assert ingress.tls_secret_name(tenant(), ISSUER) == "acme-tls"
    assert ingress.tls_secret_name(tenant(), None) is None


def test_ingress_class() -> None:
    [ing] = ingress.build(tenant(), ingress_class_name="nginx")
    assert ing["spec"]["ingressClassName"] == "nginx"


def test_certificate() -> None:
    t = tenant()
    cert = ingress.build_certificate(t, "letsencrypt-prod", "ClusterIssuer")
    assert (cert["apiVersion"], cert["kind"]) == ("cert-manager.io/v1", "Certificate")
    assert cert["metadata"]["namespace"] == "tenant-acme"
    spec = cert["spec"]
    assert spec["dnsNames"] == ["acme.example.com"]
    assert spec["secretName"] == ingress.tls_secret_name(t, ISSUER)
    assert spec["issuerRef"] == {
        "name": "letsencrypt-prod",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    source = ingress.tls_source(ISSUER)
    assert source is not None
    assert ingress.build_certificate(t, source) == cert


def test_certificate_needs_a_domain_and_an_issuer() -> None:
    with pytest.raises(ValueError, match="domain"):
        ingress.build_certificate(tenant({"domain": None}), "x", "Issuer")
    with pytest.raises(ValueError, match="issuer"):
        ingress.build_certificate(tenant(), ingress.TLSSource(secret_name="acme-cert"))
