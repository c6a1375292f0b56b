"""The one place that turns Vigil's Kafka security settings into client options.

Vigil talks to Kafka through three client libraries (faust, which runs aiokafka; aiokafka
directly; kafka-python) and documents a fourth (librdkafka, for outside clients). Each names
the same things differently. If every call site translated the settings itself, one forgotten
client would quietly connect in PLAINTEXT or fail with a vague "unable to bootstrap"; so every
Kafka client Vigil makes takes its options from here, and a new setting is added once.

With the default (``PLAINTEXT``) every function returns no security options at all, so the
clients are built exactly as before: the embedded broker's behaviour is unchanged.

The options returned hold the SASL password in clear, because the client libraries need it:
never log them. :func:`describe` is the printable summary.
"""

from __future__ import annotations

import ssl
from typing import Any

from vigil.settings import VigilSettings

__all__ = [
    "aiokafka_options",
    "describe",
    "faust_options",
    "kafka_python_options",
    "librdkafka_options",
    "ssl_context",
]


def _uses_tls(settings: VigilSettings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def _uses_sasl(settings: VigilSettings) -> bool:
    return settings.kafka_security_protocol in ("SASL_SSL", "SASL_PLAINTEXT")


def ssl_context(settings: VigilSettings) -> ssl.SSLContext | None:
    """The TLS context every Python client uses, or None without TLS.

    One context builder for aiokafka, faust and kafka-python, so that they verify the broker
    the same way: the certificate is always checked against the CA (the given file, else the
    system's trusted CAs), TLS 1.2 at least; only the host-name check can be turned off
    (``VIGIL_KAFKA_SSL_CHECK_HOSTNAME=false``, for brokers addressed by a name their
    certificate lacks). Built with Python's :mod:`ssl`, not aiokafka's helper, so that this
    ground-layer module imports no client library.
    """
    if not _uses_tls(settings):
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.kafka_ssl_cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = settings.kafka_ssl_check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    if settings.kafka_ssl_certfile:
        ctx.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
    return ctx


def _sasl_credentials(settings: VigilSettings) -> tuple[str, str, str]:
    # VigilSettings refuses SASL_* without all three, so they are set here
    assert settings.kafka_sasl_mechanism and settings.kafka_sasl_username
    assert settings.kafka_sasl_password is not None
    return (settings.kafka_sasl_mechanism, settings.kafka_sasl_username,
            settings.kafka_sasl_password.get_secret_value())


def aiokafka_options(settings: VigilSettings) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaProducer`` / ``AIOKafkaConsumer`` (and faust's)."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {}
    out: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if _uses_tls(settings):
        out["ssl_context"] = ssl_context(settings)
    if _uses_sasl(settings):
        mechanism, user, password = _sasl_credentials(settings)
        out.update(sasl_mechanism=mechanism, sasl_plain_username=user,
                   sasl_plain_password=password)
    return out


def kafka_python_options(settings: VigilSettings) -> dict[str, Any]:
    """Keyword arguments for kafka-python's ``KafkaProducer`` / ``KafkaConsumer`` /
    ``KafkaAdminClient``: the same context as aiokafka's (kafka-python then ignores its
    ``ssl_cafile``-style options), so both libraries verify the broker identically."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {}
    out: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if _uses_tls(settings):
        out["ssl_context"] = ssl_context(settings)
        out["ssl_check_hostname"] = settings.kafka_ssl_check_hostname
    if _uses_sasl(settings):
        mechanism, user, password = _sasl_credentials(settings)
        out.update(sasl_mechanism=mechanism, sasl_plain_username=user,
                   sasl_plain_password=password)
    return out


def faust_options(settings: VigilSettings, scheme: str = "kafka") -> dict[str, Any]:
    """``broker`` and ``broker_credentials`` for ``faust.App``.

    faust derives aiokafka's ``security_protocol`` from the credentials' type (an
    ``SSLCredentials`` means SSL, a ``SASLCredentials`` with a context SASL_SSL, without one
    SASL_PLAINTEXT), for its consumer and its producer alike, also through Vigil's own
    transport (:mod:`vigil.stream.transport`), which only changes the fetch wait. ``scheme``
    is the transport's URL scheme (``vigil`` for that transport); the scheme does not select
    TLS in faust, the credentials do.
    """
    broker = [f"{scheme}://{h.strip()}" for h in settings.bootstrap_servers.split(",")
              if h.strip()]
    out: dict[str, Any] = {"broker": broker}
    if settings.kafka_security_protocol == "PLAINTEXT":
        return out
    import faust

    ctx = ssl_context(settings)
    if _uses_sasl(settings):
        mechanism, user, password = _sasl_credentials(settings)
        out["broker_credentials"] = faust.SASLCredentials(
            username=user, password=password, ssl_context=ctx, mechanism=mechanism)
    else:
        out["broker_credentials"] = faust.SSLCredentials(ctx)
    return out


def librdkafka_options(settings: VigilSettings) -> dict[str, str]:
    """librdkafka configuration (confluent-kafka, kcat, most integration engines) for
    clients beside Vigil that must reach the same cluster the same way; includes
    ``bootstrap.servers``. Hostname verification maps to
    ``ssl.endpoint.identification.algorithm`` (``https`` or ``none``)."""
    out = {"bootstrap.servers": settings.bootstrap_servers}
    if settings.kafka_security_protocol == "PLAINTEXT":
        return out
    out["security.protocol"] = settings.kafka_security_protocol.lower()
    if _uses_tls(settings):
        out["ssl.endpoint.identification.algorithm"] = (
            "https" if settings.kafka_ssl_check_hostname else "none")
        if settings.kafka_ssl_cafile:
            out["ssl.ca.location"] = settings.kafka_ssl_cafile
        if settings.kafka_ssl_certfile:
            out["ssl.certificate.location"] = settings.kafka_ssl_certfile
            out["ssl.key.location"] = settings.kafka_ssl_keyfile or settings.kafka_ssl_certfile
    if _uses_sasl(settings):
        mechanism, user, password = _sasl_credentials(settings)
        out.update({"sasl.mechanisms": mechanism, "sasl.username": user,
                    "sasl.password": password})
    return out


def describe(settings: VigilSettings) -> str:
    """How Vigil reaches Kafka, for log lines and banners: never a secret."""
    parts = [settings.bootstrap_servers, settings.kafka_security_protocol]
    if _uses_sasl(settings):
        parts.append(f"{settings.kafka_sasl_mechanism} as {settings.kafka_sasl_username}")
    if _uses_tls(settings):
        parts.append(f"CA {settings.kafka_ssl_cafile or 'system'}")
        if settings.kafka_ssl_certfile:
            parts.append(f"client certificate {settings.kafka_ssl_certfile}")
        if not settings.kafka_ssl_check_hostname:
            parts.append("host name not checked")
    return " ".join(parts[:2]) + (f" ({', '.join(parts[2:])})" if parts[2:] else "")
