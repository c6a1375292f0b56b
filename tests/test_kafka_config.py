"""vigil.kafka_config: the one translation of the security settings into client options.

The TLS path itself runs end to end in tests/test_tls.py; here, that every library gets the
same meaning, that PLAINTEXT adds nothing (the embedded broker's clients are unchanged), and
that the password reaches the clients but no printable summary.
"""

from __future__ import annotations

import ssl

import faust
import pytest

from vigil.kafka_config import (
    aiokafka_options,
    describe,
    faust_options,
    kafka_python_options,
    librdkafka_options,
    ssl_context,
)
from vigil.settings import VigilSettings


def sasl_ssl(**kw) -> VigilSettings:
    return VigilSettings(kafka_url="k1:9093,k2:9093", pseudonym_key="k",
                         kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                         kafka_sasl_username="vigil-worker", kafka_sasl_password="pw-s3cret",
                         **kw)


def test_plaintext_adds_no_option_at_all() -> None:
    for s in (VigilSettings(), VigilSettings(kafka_url="k:9092", pseudonym_key="k")):
        assert aiokafka_options(s) == {} and kafka_python_options(s) == {}
        assert ssl_context(s) is None
        assert faust_options(s, scheme="vigil") == {
            "broker": [f"vigil://{h}" for h in s.bootstrap_servers.split(",")]}
        assert librdkafka_options(s) == {"bootstrap.servers": s.bootstrap_servers}


def test_sasl_ssl_for_every_library() -> None:
    s = sasl_ssl()
    for opts in (aiokafka_options(s), kafka_python_options(s)):
        assert opts["security_protocol"] == "SASL_SSL"
        assert (opts["sasl_mechanism"], opts["sasl_plain_username"],
                opts["sasl_plain_password"]) == ("SCRAM-SHA-512", "vigil-worker", "pw-s3cret")
        ctx = opts["ssl_context"]
        assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED
        assert ctx.check_hostname and ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    f = faust_options(s, scheme="vigil")
    assert f["broker"] == ["vigil://k1:9093", "vigil://k2:9093"]
    creds = f["broker_credentials"]
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-512"
    assert creds.ssl_context is not None and "pw-s3cret" not in repr(creds)
    assert librdkafka_options(s) == {
        "bootstrap.servers": "k1:9093,k2:9093", "security.protocol": "sasl_ssl",
        "ssl.endpoint.identification.algorithm": "https", "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "vigil-worker", "sasl.password": "pw-s3cret"}
    assert describe(s) == "k1:9093,k2:9093 SASL_SSL (SCRAM-SHA-512 as vigil-worker, CA system)"


def test_sasl_plaintext_has_no_tls() -> None:
    s = VigilSettings(kafka_url="k:9092", pseudonym_key="k",
                      kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
                      kafka_sasl_username="u", kafka_sasl_password="p")
    assert "ssl_context" not in aiokafka_options(s) and ssl_context(s) is None
    creds = faust_options(s)["broker_credentials"]
    assert creds.protocol.value == "SASL_PLAINTEXT" and creds.mechanism.value == "PLAIN"


def test_ssl_with_a_ca_file_and_no_hostname_check(tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(_A_CA_PEM)
    s = VigilSettings(kafka_url="k:9093", pseudonym_key="k", kafka_security_protocol="SSL",
                      kafka_ssl_cafile=str(ca), kafka_ssl_check_hostname=False)
    ctx = ssl_context(s)
    assert ctx is not None and not ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "Vigil unit CA"),),)]
    creds = faust_options(s)["broker_credentials"]
    assert isinstance(creds, faust.SSLCredentials) and creds.protocol.value == "SSL"
    assert kafka_python_options(s)["ssl_check_hostname"] is False
    rd = librdkafka_options(s)
    assert rd["ssl.ca.location"] == str(ca) and rd["ssl.endpoint.identification.algorithm"] == "none"
    assert describe(s) == f"k:9093 SSL (CA {ca}, host name not checked)"


def test_a_client_certificate_must_load() -> None:
    """A key that does not match (here: no key at all in the file) fails when the context
    is built, at start-up, not at the first connection."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".pem") as cert:
        cert.write(_A_CA_PEM)
        cert.flush()
        s = VigilSettings(kafka_url="k:9093", pseudonym_key="k", kafka_security_protocol="SSL",
                          kafka_ssl_certfile=cert.name)
        with pytest.raises(ssl.SSLError):
            ssl_context(s)


# A throwaway self-signed CA certificate (EC P-256, CN "Vigil unit CA"); its key was discarded.
_A_CA_PEM = """-----BEGIN CERTIFICATE-----
MIIBiDCCAS2gAwIBAgIUDhGaX69fO07W9qT/YTcwfWwDFeowCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNVmlnaWwgdW5pdCBDQTAgFw0yNjEyMDEwNzM2MjBaGA8yMTI2
MTEwNzA3MzYyMFowGDEWMBQGA1UEAwwNVmlnaWwgdW5pdCBDQTBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABHm1mw897ERpWyKKsvcJfbOF5rIhx5ygZRqZUcftrXvA
d9Oil1layY9P4b52z2Tll1jkKrGvaq/vhSrlHUFRXB2jUzBRMB0GA1UdDgQWBBTu
fveF+ZaftfIWmFRJaeEQ67BhwDAfBgNVHSMEGDAWgBTufveF+ZaftfIWmFRJaeEQ
67BhwDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQCMQkvBAxs5
pYMHQa+cd3UZ7CKqy1fnHVerNBHpIGv6rgIhAPgoZg6qH1B00rJfJWHHTQckVjK6
c9y/xodYLRGEX4xi
-----END CERTIFICATE-----
"""
