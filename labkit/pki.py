"""The cluster's certificate authority, serving certificate and tokens.

Generated once per cluster at `labkit up` with `cryptography`: an EC P-256 CA
("labkit-ca"), a serving certificate for every name and address the API
server is reached by (loopback for the kubeconfig's holder; the node address
and the `kubernetes` Service for in-cluster clients), and two bearer tokens:
the admin token written into the kubeconfig and a read-only service-account
token that pods receive.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

SERVER_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local", "labkit-control-plane")
SERVER_IPS = ("127.0.0.1", "10.96.0.1", "172.18.0.2")


@dataclass(frozen=True)
class Pki:
    """Paths of the files under `<state>/pki`."""

    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def server_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def admin_token(self) -> Path:
        return self.dir / "admin.token"

    @property
    def sa_token(self) -> Path:
        return self.dir / "serviceaccount.token"

    def exists(self) -> bool:
        return all(p.exists() for p in (self.ca_cert, self.server_cert, self.server_key, self.admin_token,
                                        self.sa_token))


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def ensure(pki_dir: Path) -> Pki:
    """Create the CA, serving certificate and tokens unless they exist."""
    pki = Pki(pki_dir)
    if pki.exists():
        return pki
    # Imported here: only the first start of a cluster generates anything.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pki_dir.mkdir(parents=True, exist_ok=True)
    pki_dir.chmod(0o700)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "labkit-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(pki.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(pki.server_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(pki.server_key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    _write(pki.admin_token, secrets.token_urlsafe(32).encode())
    _write(pki.sa_token, secrets.token_urlsafe(32).encode())
    return pki
