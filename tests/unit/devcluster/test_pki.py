from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from stackforge_operator.devcluster.pki import FRONT_PROXY_CLIENT, create_front_proxy, create_pki


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_every_certificate_is_signed_by_the_ca(tmp_path: Path) -> None:
    pki = create_pki(tmp_path, "10.96.0.1")
    ca = _load(pki.ca.cert)
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    for pair in (pki.apiserver, pki.admin, pki.controller_manager, pki.scheduler):
        cert = _load(pair.cert)
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)


def test_serving_certificate_names_loopback_and_service_ip(tmp_path: Path) -> None:
    pki = create_pki(tmp_path, "10.96.0.1")
    cert = _load(pki.apiserver.cert)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kubernetes.default.svc" in names.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {
        "127.0.0.1", "10.96.0.1",
    }
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usages


def test_client_identities_match_the_bootstrap_rbac_policy(tmp_path: Path) -> None:
    pki = create_pki(tmp_path, "10.96.0.1")
    admin = _load(pki.admin.cert).subject
    assert admin.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    controller_manager = _load(pki.controller_manager.cert).subject
    assert (
        controller_manager.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        == "system:kube-controller-manager"
    )
    # Components are not cluster-admin.
    assert not controller_manager.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)


def test_private_keys_are_readable_only_by_the_owner(tmp_path: Path) -> None:
    pki = create_pki(tmp_path, "10.96.0.1")
    for key in (pki.ca.key, pki.admin.key, pki.service_account_key):
        assert key.stat().st_mode & 0o077 == 0


def test_the_front_proxy_has_a_ca_of_its_own_and_a_client_certificate(tmp_path: Path) -> None:
    """The aggregation layer trusts only what the front-proxy CA signed: a
    certificate from the cluster CA can never pass as the front proxy."""
    pki = create_pki(tmp_path, "10.96.0.1")
    ca_pair, client_pair = create_front_proxy(tmp_path)
    ca, client = _load(ca_pair.cert), _load(client_pair.cert)
    client.verify_directly_issued_by(ca)
    assert ca.subject != _load(pki.ca.cert).subject
    assert ca_pair.cert != pki.ca.cert  # the cluster CA's file is kept
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
        FRONT_PROXY_CLIENT
    usages = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
