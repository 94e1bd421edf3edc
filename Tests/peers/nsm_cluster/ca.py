"""A test SPIFFE CA: one trust domain, EC P-256, X.509-SVIDs with a URI SAN.

    ca = CA("spiffe://test.weft")            # or CA("test.weft")
    svid = ca.mint("spiffe://test.weft/nsmgr", ttl=3600)
    svid.write("/tmp/dir/nsmgr")             # nsmgr.crt.pem, nsmgr.key.pem
    ca.write_bundle("/tmp/dir/bundle.pem")

SVIDs follow SPIRE's defaults: EC P-256 key, leaf signed directly by the CA,
one URI SAN (the SPIFFE ID), KeyUsage digitalSignature|keyEncipherment|keyAgreement,
ExtKeyUsage serverAuth+clientAuth, not a CA, subject O=SPIRE, C=US (no CN, no DNS SAN).
"""
from __future__ import annotations

import datetime as _dt
import os
import threading
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def trust_domain_of(spiffe_id_or_td: str) -> str:
    """'spiffe://test.weft/x' or 'test.weft' -> 'test.weft'."""
    s = spiffe_id_or_td
    if s.startswith("spiffe://"):
        s = s[len("spiffe://"):]
    return s.split("/", 1)[0]


def now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


@dataclass
class SVID:
    spiffe_id: str
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    bundle: list  # CA certificates (x509.Certificate) of the trust domain

    @property
    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pkcs8_der(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @property
    def bundle_der(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.DER) for c in self.bundle)

    @property
    def bundle_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.bundle)

    @property
    def not_after(self) -> _dt.datetime:
        return self.cert.not_valid_after_utc

    def write(self, prefix: str) -> tuple[str, str]:
        """Writes <prefix>.crt.pem and <prefix>.key.pem (0600); returns both paths."""
        crt, key = prefix + ".crt.pem", prefix + ".key.pem"
        _atomic_write(crt, self.cert_pem)
        _atomic_write(key, self.key_pem, mode=0o600)
        return crt, key


def _atomic_write(path: str, data: bytes, mode: int = 0o644) -> None:
    tmp = f"{path}.tmp{os.getpid()}.{threading.get_ident()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def spiffe_id_from_cert(cert: x509.Certificate) -> str | None:
    """The single spiffe:// URI SAN of a certificate, or None."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith("spiffe://")]
    return uris[0] if len(uris) == 1 else None


class CA:
    """A self-signed root for one trust domain."""

    def __init__(self, trust_domain: str, ttl: int = 24 * 3600):
        self.trust_domain = trust_domain_of(trust_domain)
        self.key = ec.generate_private_key(ec.SECP256R1())
        t = now()
        name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SPIFFE"),
                          x509.NameAttribute(NameOID.SERIAL_NUMBER, str(x509.random_serial_number()))])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(t - _dt.timedelta(minutes=5))
            .not_valid_after(t + _dt.timedelta(seconds=ttl))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"spiffe://{self.trust_domain}")]), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def bundle(self) -> list:
        return [self.cert]

    @property
    def bundle_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def bundle_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def write_bundle(self, path: str) -> str:
        _atomic_write(path, self.bundle_pem)
        return path

    def id(self, path: str) -> str:
        """'nsmgr' -> 'spiffe://<td>/nsmgr'; a full spiffe:// ID is returned unchanged."""
        if path.startswith("spiffe://"):
            return path
        return f"spiffe://{self.trust_domain}/{path.lstrip('/')}"

    def mint(self, spiffe_id: str, ttl: float = 3600, not_before: _dt.datetime | None = None,
             key: ec.EllipticCurvePrivateKey | None = None) -> SVID:
        """An X.509-SVID for spiffe_id valid from not_before (default: now - 10 s) for ttl seconds.
        A negative ttl (with not_before in the past) gives an already-expired SVID."""
        spiffe_id = self.id(spiffe_id)
        key = key or ec.generate_private_key(ec.SECP256R1())
        nb = not_before or (now() - _dt.timedelta(seconds=10))
        na = nb + _dt.timedelta(seconds=10 + ttl) if not_before is None else nb + _dt.timedelta(seconds=ttl)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                                     x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SPIRE")]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(nb)
            .not_valid_after(na)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                         data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return SVID(spiffe_id, cert, key, self.bundle)

    def mint_expired(self, spiffe_id: str) -> SVID:
        """An SVID whose validity ended a minute ago."""
        return self.mint(spiffe_id, ttl=3600, not_before=now() - _dt.timedelta(seconds=3660))
