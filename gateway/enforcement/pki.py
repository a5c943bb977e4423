"""The broker's small PKI: a CA, the broker's server certificate and client
certificates (CN = the broker username: a terminal id, or a gateway user), in
one directory, made with `python -m gateway pki` (gateway/cli/pki.py).

Why our own CA and not a public one: the only parties are our broker, our
gateway and our terminals, and a terminal must accept exactly our broker (a
public CA would let anyone with a certificate for some name in the path pose
as it if the name check were ever loosened) and the broker must accept
client certificates that we issued and no others.

Choices and where they come from:
- keys are ECDSA P-256: a TLS handshake on a Pi 3 costs a few milliseconds
  instead of RSA-2048's tens, and OpenSSL, Mosquitto and MicroPython's
  mbedTLS ports all speak it;
- the broker certificate names `localhost` and 127.0.0.1 (tests, a broker
  next to the gateway) plus whatever `--host` adds; clients check it
  (hostname verification stays on everywhere);
- client certificates carry clientAuth only, the broker's serverAuth only, so
  a terminal's certificate cannot serve as a broker;
- a certificate revocation list (`crl.pem`, empty at first) is kept current
  by `revoke`, and the generated broker configuration points the
  certificate listener at it: a stolen terminal's certificate is revoked
  there (and its password and key replaced with `terminal add`);
- every file is 0600 and the directory 0700: `ca.key` is the key to every
  terminal's identity and belongs on the operator's machine, not on the
  broker (broker-auth copies only `ca.crt`, `broker.crt`, `broker.key` and
  `crl.pem` next to the broker's configuration).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocols import topics

CA_CERT, CA_KEY = "ca.crt", "ca.key"
BROKER_CERT, BROKER_KEY = "broker.crt", "broker.key"
CRL = "crl.pem"
OWN_FILES = ("ca", "broker", "crl")   # names `issue` refuses: they are the PKI's own files
DEFAULT_HOSTS = ("localhost", "127.0.0.1")
CA_DAYS = 3650
LEAF_DAYS = 825          # the longest validity browsers still accept for a server certificate


class PkiError(ValueError):
    pass


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def secure_dir(path: str | Path) -> Path:
    """Create `path` (and parents) 0700, or tighten it to 0700."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: bytes) -> Path:
    """Write `data` to `path` with mode 0600 from the first byte (never
    world-readable for a moment), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    return path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "agri-quota"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _san(hosts) -> x509.SubjectAlternativeName:
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


class Pki:
    def __init__(self, directory: str | Path):
        self.dir = Path(directory)

    @property
    def ca_cert(self) -> Path:
        return self.dir / CA_CERT

    @property
    def broker_cert(self) -> Path:
        return self.dir / BROKER_CERT

    @property
    def broker_key(self) -> Path:
        return self.dir / BROKER_KEY

    @property
    def crl(self) -> Path:
        return self.dir / CRL

    def exists(self) -> bool:
        return self.ca_cert.exists() and (self.dir / CA_KEY).exists()

    # -- init

    def init(self, hosts=DEFAULT_HOSTS, force: bool = False) -> None:
        """A new CA, a broker certificate for `hosts`, an empty CRL."""
        if self.exists() and not force:
            raise PkiError(f"{self.dir} already holds a CA ({CA_CERT}); refusing to replace it "
                           "(every issued certificate would stop working): use another directory or --force")
        secure_dir(self.dir)
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        name = _name("agri-quota broker CA")
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False, key_agreement=False,
                                             key_cert_sign=True, crl_sign=True, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        write_private(self.dir / CA_KEY, _key_pem(key))
        write_private(self.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
        for old in self.dir.glob("*.revoked"):
            old.unlink()
        self._write_crl([])
        hosts = list(dict.fromkeys(hosts))
        self._issue("broker", hosts[0], server_hosts=hosts)

    # -- issue, revoke

    def issue(self, name: str, days: int = LEAF_DAYS, force: bool = False) -> Issued:
        """A client certificate with CN = `name` (a terminal id or a gateway
        broker user), for the broker's certificate listener."""
        if not topics.is_terminal_id(name):
            raise PkiError(f"certificate name {name!r} must be {topics.TERMINAL_ID_RULE}")
        if name in OWN_FILES:
            raise PkiError(f"{name!r} names one of the PKI's own files; it cannot be a client certificate")
        if (self.dir / f"{name}.crt").exists() and not force:
            raise PkiError(f"{self.dir / (name + '.crt')} exists; revoke it first or pass --force to replace it")
        return self._issue(name, name, days=days)

    def _issue(self, stem: str, cn: str, server_hosts=None, days: int = LEAF_DAYS) -> Issued:
        if not self.exists():
            raise PkiError(f"no CA in {self.dir}: run `pki --out {self.dir} init` first")
        ca_key = serialization.load_pem_private_key((self.dir / CA_KEY).read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server_hosts else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False, key_agreement=True,
                                                key_cert_sign=False, crl_sign=False, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False))
        if server_hosts:
            builder = builder.add_extension(_san(server_hosts), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        key_path = write_private(self.dir / f"{stem}.key", _key_pem(key))
        cert_path = write_private(self.dir / f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM))
        return Issued(cert_path, key_path)

    def revoke(self, name: str) -> int:
        """Put `name`'s certificate on the CRL (and keep it there when it is
        issued again: the serial is what is revoked). Returns the number of
        serials now revoked."""
        path = self.dir / f"{name}.crt"
        if name in OWN_FILES or not path.exists():
            raise PkiError(f"no client certificate {path}")
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        write_private(self.dir / f"{name}.{cert.serial_number:x}.revoked", cert.public_bytes(serialization.Encoding.PEM))
        serials = sorted({x509.load_pem_x509_certificate(p.read_bytes()).serial_number
                          for p in self.dir.glob("*.revoked")})
        self._write_crl(serials)
        return len(serials)

    def _write_crl(self, serials: list[int]) -> None:
        """The CRL, valid until the CA expires: OpenSSL refuses every client
        certificate once a CRL's nextUpdate has passed, and nothing here
        republishes it on a schedule."""
        ca_key = serialization.load_pem_private_key((self.dir / CA_KEY).read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        now = _now()
        builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
                   .last_update(now - dt.timedelta(minutes=5)).next_update(ca_cert.not_valid_after_utc))
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build())
        crl = builder.sign(ca_key, hashes.SHA256())
        write_private(self.crl, crl.public_bytes(serialization.Encoding.PEM))
