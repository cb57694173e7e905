"""Self-signed CA and serving certificate for the admission webhook, and when to rotate them.

Why: the API server only calls webhooks over TLS and must trust the server's certificate
through the ``caBundle`` of the ValidatingWebhookConfiguration. Generating both here (with
``cryptography``, already a dependency) means the chart needs neither cert-manager nor a
pre-install hook. Everything in this module is pure apart from reading the clock passed in.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertBundle:
    """PEM-encoded CA certificate, serving certificate and the serving key."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @property
    def not_after(self) -> dt.datetime:
        return x509.load_pem_x509_certificate(self.cert_pem).not_valid_after_utc

    @property
    def sans(self) -> list[str]:
        cert = x509.load_pem_x509_certificate(self.cert_pem)
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return [str(v) for v in ext.get_values_for_type(x509.DNSName)] + [
            str(v) for v in ext.get_values_for_type(x509.IPAddress)
        ]


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def generate(hosts: Sequence[str], *, now: dt.datetime, days: int = 365) -> CertBundle:
    """A fresh CA (valid ``days`` + 30) and a serving cert for ``hosts`` (valid ``days``)."""
    if not hosts:
        raise ValueError("hosts: at least one DNS name or IP address is required")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kaito-controller-webhook-ca")])
    start = now - dt.timedelta(minutes=5)  # tolerate small clock skew with the API server
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + dt.timedelta(days=days + 30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return CertBundle(
        ca_pem=ca.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def needs_rotation(
    bundle: CertBundle | None,
    hosts: Sequence[str],
    *,
    now: dt.datetime,
    renew_before: dt.timedelta,
) -> str | None:
    """Why the bundle must be replaced, or ``None`` when it is still good."""
    if bundle is None:
        return "no certificate yet"
    try:
        not_after = bundle.not_after
        sans = set(bundle.sans)
    except ValueError as err:
        return f"stored certificate is unreadable: {err}"
    if not_after - now <= renew_before:
        return f"certificate expires at {not_after.isoformat()}"
    missing = sorted(set(hosts) - sans)
    if missing:
        return f"certificate does not cover {', '.join(missing)}"
    return None


def ca_bundle(new: CertBundle, old: CertBundle | None) -> bytes:
    """CA bundle to publish during a rotation: the new CA first, then the old one.

    Publishing both lets the API server trust the old serving cert until the server has
    switched to the new one, so a rotation never causes failed admission calls.
    """
    if old is None or old.ca_pem == new.ca_pem:
        return new.ca_pem
    return new.ca_pem + old.ca_pem
