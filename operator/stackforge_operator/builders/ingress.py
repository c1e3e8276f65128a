"""The tenant's custom domain: an Ingress to Kong, and optionally a cert-manager Certificate.

TLS comes from the tenant spec's ``tls`` (not part of the effective tenant, which
carries only the domain), passed in as a :class:`TLSSource`: either an existing
Secret (``secretName``) or one cert-manager fills (``issuerRef``, Secret
``<tenant>-tls``). Whether the Certificate CRD exists is the reconciler's
question, not a builder's.
"""

from __future__ import annotations

from dataclasses import dataclass

from stackforge_operator.builders.common import Manifest, metadata
from stackforge_operator.builders.kong import HTTP_PORT, PROXY_SERVICE
from stackforge_operator.models.effective import EffectiveTenant
from stackforge_operator.models.tenant import TLSSpec

COMPONENT = "ingress"
NAME = "tenant"
CERTIFICATE_NAME = "tenant"
CERT_MANAGER_GROUP = "cert-manager.io"


@dataclass(frozen=True)
class TLSSource:
    """Where the domain's certificate comes from: a named Secret or an issuer."""

    secret_name: str | None = None
    issuer_name: str | None = None
    issuer_kind: str = "ClusterIssuer"


def tls_source(tls: TLSSpec | None) -> TLSSource | None:
    """The spec's ``tls`` in builder terms (None: serve the domain without TLS)."""
    if tls is None:
        return None
    if tls.issuer_ref is not None:
        return TLSSource(issuer_name=tls.issuer_ref.name, issuer_kind=tls.issuer_ref.kind)
    return TLSSource(secret_name=tls.secret_name)


def issued_secret_name(t: EffectiveTenant) -> str:
    """Where cert-manager puts the certificate it issues for the tenant."""
    return f"{t.name}-tls"


def _source(tls: TLSSource | TLSSpec | None) -> TLSSource | None:
    return tls_source(tls) if isinstance(tls, TLSSpec) else tls


def tls_secret_name(t: EffectiveTenant, tls: TLSSource | TLSSpec | None) -> str | None:
    """The Secret the Ingress serves, or None when the domain has no TLS."""
    source = _source(tls)
    if source is None:
        return None
    if source.secret_name is not None:
        return source.secret_name
    return issued_secret_name(t)


def build(
    t: EffectiveTenant,
    tls: TLSSource | TLSSpec | None = None,
    *,
    ingress_class_name: str | None = None,
) -> list[Manifest]:
    """The Ingress routing the whole domain to Kong; [] without a domain.

    ``ingress_class_name=None`` leaves the choice to the cluster's default class.
    """
    if t.domain is None:
        return []
    spec: dict[str, object] = {}
    if ingress_class_name is not None:
        spec["ingressClassName"] = ingress_class_name
    spec["rules"] = [
        {
            "host": t.domain,
            "http": {
                "paths": [
                    {
                        # Kong does the per-app routing; the Ingress only gets traffic in.
                        "path": "/",
                        "pathType": "Prefix",
                        "backend": {
                            "service": {"name": PROXY_SERVICE, "port": {"number": HTTP_PORT}}
                        },
                    }
                ]
            },
        }
    ]
    secret = tls_secret_name(t, tls)
    if secret is not None:
        spec["tls"] = [{"hosts": [t.domain], "secretName": secret}]
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": metadata(t, NAME, COMPONENT),
            "spec": spec,
        }
    ]


def build_certificate(
    t: EffectiveTenant, issuer: str | TLSSource, issuer_kind: str = "ClusterIssuer"
) -> Manifest:
    """A cert-manager Certificate for the domain, into the Secret the Ingress serves.

    ``issuer`` is the Issuer/ClusterIssuer name, or a :class:`TLSSource` naming one.
    """
    if isinstance(issuer, TLSSource):
        if issuer.issuer_name is None:
            raise ValueError("the TLS source names no issuer")
        issuer_name, issuer_kind = issuer.issuer_name, issuer.issuer_kind
    else:
        issuer_name = issuer
    if t.domain is None:
        raise ValueError(f"tenant {t.name} has no domain to certify")
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": metadata(t, CERTIFICATE_NAME, COMPONENT),
        "spec": {
            "secretName": issued_secret_name(t),
            "dnsNames": [t.domain],
            "issuerRef": {"name": issuer_name, "kind": issuer_kind, "group": CERT_MANAGER_GROUP},
            # A fresh key on every renewal: a leaked key dies with its certificate.
            "privateKey": {"rotationPolicy": "Always"},
        },
    }
