"""Certificates and keys for the local control plane.

One CA signs the API server's serving certificate and every client
certificate; the service-account key pair signs and verifies tokens.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Long enough for any test run or local session, short enough that a leaked
# file is worthless soon after.
_VALIDITY = datetime.timedelta(days=7)


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterPKI:
    ca: KeyPair
    apiserver: KeyPair
    admin: KeyPair
    controller_manager: KeyPair
    scheduler: KeyPair
    service_account_key: Path
    service_account_pub: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> (
    x509.CertificateBuilder
):
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        # Clocks of the processes are the same host's, but allow a little skew.
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


def _issue(
    directory: Path,
    stem: str,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    subject: x509.Name,
    *,
    server_names: tuple[str, ...] = (),
    server_ips: tuple[str, ...] = (),
) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server_names or server_ips else []
    usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        _builder(subject, ca_name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if server_names or server_ips:
        alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
        alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    pair = KeyPair(cert=directory / f"{stem}.crt", key=directory / f"{stem}.key")
    _write_cert(pair.cert, cert)
    _write_key(pair.key, key)
    return pair


def create_pki(
    directory: Path, service_ip: str, *, extra_server_ips: tuple[str, ...] = ()
) -> ClusterPKI:
    """Write a fresh CA, serving/client certificates and SA keys into ``directory``.

    ``extra_server_ips`` are further addresses the API server is reached at
    (the real node's address, which pods route to).
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("stackforge-local-ca")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca = KeyPair(cert=directory / "ca.crt", key=directory / "ca.key")
    _write_cert(ca.cert, ca_cert)
    _write_key(ca.key, ca_key)

    apiserver = _issue(
        directory,
        "apiserver",
        ca_key,
        ca_name,
        _name("kube-apiserver"),
        server_names=(
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
        server_ips=("127.0.0.1", service_ip, *extra_server_ips),
    )
    # Identities the bootstrap RBAC policy already knows: system:masters for
    # the admin, and the components' own users so they run with their real,
    # limited rights instead of as cluster-admin.
    admin = _issue(directory, "admin", ca_key, ca_name, _name("stackforge-admin", "system:masters"))
    controller_manager = _issue(
        directory, "controller-manager", ca_key, ca_name, _name("system:kube-controller-manager")
    )
    scheduler = _issue(directory, "scheduler", ca_key, ca_name, _name("system:kube-scheduler"))

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_key_path = directory / "sa.key"
    sa_pub_path = directory / "sa.pub"
    _write_key(sa_key_path, sa_key)
    sa_pub_path.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return ClusterPKI(
        ca=ca,
        apiserver=apiserver,
        admin=admin,
        controller_manager=controller_manager,
        scheduler=scheduler,
        service_account_key=sa_key_path,
        service_account_pub=sa_pub_path,
    )


def issue_certificate(
    pki: ClusterPKI,
    stem: str,
    common_name: str,
    organization: str | None = None,
    *,
    server_names: tuple[str, ...] = (),
    server_ips: tuple[str, ...] = (),
) -> KeyPair:
    """Another certificate signed by the cluster CA, beside the CA's files.

    For identities only some clusters need: the real node's kubelet (client
    and serving), kube-proxy, and the API server's client to kubelets.
    """
    ca_key = serialization.load_pem_private_key(pki.ca.key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_name = x509.load_pem_x509_certificate(pki.ca.cert.read_bytes()).subject
    return _issue(
        pki.ca.cert.parent, stem, ca_key, ca_name, _name(common_name, organization),
        server_names=server_names, server_ips=server_ips,
    )


def _separate_ca(directory: Path, stem: str, common_name: str) -> tuple[
        KeyPair, ec.EllipticCurvePrivateKey, x509.Name]:
    """A CA apart from the cluster's, written as ``<stem>.crt``/``.key``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(common_name)
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca = KeyPair(cert=directory / f"{stem}.crt", key=directory / f"{stem}.key")
    _write_cert(ca.cert, ca_cert)
    _write_key(ca.key, ca_key)
    return ca, ca_key, ca_name


def create_server_tls(
    directory: Path, common_name: str, *, server_names: tuple[str, ...] = (),
    server_ips: tuple[str, ...] = (),
) -> tuple[KeyPair, KeyPair]:
    """A CA of its own and one serving certificate it signed, for a test service
    (the S3 server pods reach over TLS). Returns (ca, server)."""
    ca, ca_key, ca_name = _separate_ca(directory, "ca", f"{common_name} CA")
    server = _issue(directory, "server", ca_key, ca_name, _name(common_name),
                    server_names=server_names, server_ips=server_ips)
    return ca, server


# The one name the API server accepts as its front proxy (--requestheader-allowed-names).
FRONT_PROXY_CLIENT = "front-proxy-client"


def create_front_proxy(directory: Path) -> tuple[KeyPair, KeyPair]:
    """The aggregation layer's identities: a CA of its own, as kubeadm makes it,
    and the client certificate the API server presents to aggregated API
    servers (metrics-server) when it forwards a request with the caller's
    name in headers. A CA apart from the cluster's: a certificate the cluster
    CA signs for anyone else could never pass as the front proxy. Returns
    (ca, client)."""
    ca, ca_key, ca_name = _separate_ca(directory, "front-proxy-ca", "front-proxy-ca")
    client = _issue(directory, FRONT_PROXY_CLIENT, ca_key, ca_name, _name(FRONT_PROXY_CLIENT))
    return ca, client
