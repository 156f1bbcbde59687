"""Credentials a deployment makes for itself: a private CA, a TLS certificate per server, and the
gateway's service key. The local stack writes a fresh set at every start; compose runs this as a
one-shot container (`python -m flotilla.credentials DIR --hosts ...`).

    DIR/ca.crt                      the CA every client trusts (its key is thrown away once used)
    DIR/<server>/tls.crt, tls.key   nats, dispatcher, gateway (its gRPC API): one each; the nats
                                    one is a client certificate too (a cluster's routes are mutual TLS)
    DIR/gateway/service.key         the gateway's Ed25519 key: it signs its calls to the dispatcher
    DIR/dispatcher/trusted/gateway.pub   the only service the dispatcher accepts calls from

Each service is given its own folder (and ca.crt) and nothing else: the worker holds no key that
speaks to the dispatcher or the gateway.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flotilla.auth import generate_service_key

SERVERS = ("nats", "dispatcher", "gateway")
VALID_DAYS = 365


@dataclass(frozen=True)
class Credentials:
    """Paths of one set, as written by `write_credentials`."""

    root: Path

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.crt"

    def cert_file(self, server: str) -> Path:
        return self.root / server / "tls.crt"

    def key_file(self, server: str) -> Path:
        return self.root / server / "tls.key"

    @property
    def gateway_service_key(self) -> Path:
        return self.root / "gateway" / "service.key"

    @property
    def dispatcher_trusted_dir(self) -> Path:
        return self.root / "dispatcher" / "trusted"


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Flotilla"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _subject_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _key_usages(server: str) -> list[x509.ObjectIdentifier]:
    """Servers prove themselves to clients; a NATS node is also its peers' client on the cluster
    routes (`cluster { tls { verify: true } }`, k8s/base/nats/cluster.conf)."""
    if server == "nats":
        return [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    return [ExtendedKeyUsageOID.SERVER_AUTH]


def _write(path: Path, data: bytes, *, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    partial.chmod(0o600 if private else 0o644)
    os.replace(partial, path)


def write_credentials(directory: Path, *, hosts: list[str] | None = None) -> Credentials:
    """A new CA, a certificate per server valid for `hosts` (and the server's own name), and the
    gateway's service key pair, written under `directory` (replacing what was there)."""
    hosts = hosts or ["127.0.0.1", "localhost"]
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Flotilla deployment CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    credentials = Credentials(directory)
    _write(credentials.ca_file, ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
    for server in SERVERS:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(server))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(_subject_names([server, *hosts])), critical=False)
            .add_extension(x509.ExtendedKeyUsage(_key_usages(server)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        _write(credentials.cert_file(server), cert.public_bytes(serialization.Encoding.PEM), private=False)
        _write(credentials.key_file(server), _pem_key(key), private=True)
    private, public = generate_service_key()
    _write(credentials.gateway_service_key, private, private=True)
    for stale in (
        credentials.dispatcher_trusted_dir.glob("*.pub") if credentials.dispatcher_trusted_dir.is_dir() else []
    ):
        stale.unlink()
    _write(credentials.dispatcher_trusted_dir / "gateway.pub", public, private=False)
    return credentials


def _still_good(credentials: Credentials, hosts: list[str]) -> bool:
    """The CA has 30+ days left and every server's certificate carries all of `hosts` (a compose
    project that gains NATS nodes needs new certificates)."""
    if not credentials.ca_file.is_file():
        return False
    ca = x509.load_pem_x509_certificate(credentials.ca_file.read_bytes())
    if ca.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc) <= datetime.timedelta(days=30):
        return False
    for server in SERVERS:
        if not credentials.cert_file(server).is_file():
            return False
        cert = x509.load_pem_x509_certificate(credentials.cert_file(server).read_bytes())
        carried = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        if not set(_subject_names(hosts)) <= carried:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--hosts", default="127.0.0.1,localhost", help="names and addresses the certificates are for")
    parser.add_argument("--keep", action="store_true", help="do nothing when DIR/ca.crt exists and has 30+ days left")
    args = parser.parse_args(argv)
    credentials = Credentials(args.directory)
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    if args.keep and _still_good(credentials, hosts):
        print(f"credentials in {args.directory} kept", file=sys.stderr)
        return 0
    write_credentials(args.directory, hosts=hosts)
    print(f"credentials written to {args.directory}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
