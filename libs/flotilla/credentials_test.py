from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from flotilla.credentials import SERVERS, main, write_credentials


def test_each_server_gets_a_certificate_for_its_names_and_only_nats_one_for_clients_too(tmp_path: Path) -> None:
    credentials = write_credentials(tmp_path, hosts=["*.nats", "127.0.0.1"])
    ca = x509.load_pem_x509_certificate(credentials.ca_file.read_bytes())
    for server in SERVERS:
        cert = x509.load_pem_x509_certificate(credentials.cert_file(server).read_bytes())
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert names.get_values_for_type(x509.DNSName) == [server, "*.nats"]
        usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        # A NATS node is its peers' client on the cluster routes (mutual TLS); the others only serve.
        expected = {ExtendedKeyUsageOID.SERVER_AUTH}
        if server == "nats":
            expected.add(ExtendedKeyUsageOID.CLIENT_AUTH)
        assert usages == expected, server
        assert (credentials.key_file(server).stat().st_mode & 0o777) == 0o600
    assert (credentials.dispatcher_trusted_dir / "gateway.pub").is_file() and credentials.gateway_service_key.is_file()


def test_keep_keeps_a_set_that_covers_the_hosts_and_remakes_one_that_does_not(tmp_path: Path) -> None:
    main([str(tmp_path), "--hosts", "nats,localhost"])
    first = (tmp_path / "ca.crt").read_bytes()
    main([str(tmp_path), "--keep", "--hosts", "nats,localhost"])
    assert (tmp_path / "ca.crt").read_bytes() == first
    main([str(tmp_path), "--keep", "--hosts", "nats,nats-2,localhost"])  # a cluster's new node
    assert (tmp_path / "ca.crt").read_bytes() != first
    names = x509.load_pem_x509_certificate((tmp_path / "nats" / "tls.crt").read_bytes()).extensions
    assert "nats-2" in names.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )
