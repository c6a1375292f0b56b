"""The one settings object: VIGIL_* environment, validation at construction."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from vigil.settings import DEV_PSEUDONYM_KEY, VigilSettings


def test_environment_overrides_defaults(monkeypatch) -> None:
    monkeypatch.setenv("VIGIL_KAFKA_URL", "kafka:9092")
    monkeypatch.setenv("VIGIL_PARTITIONS", "12")
    monkeypatch.setenv("VIGIL_WINDOW_LENGTHS_S", "[21600, 1800]")
    monkeypatch.setenv("VIGIL_SEPSIS_LEVELS", '[[0.3, "medium"], [0.6, "high"]]')
    monkeypatch.setenv("VIGIL_PSEUDONYM_KEY", "k")
    s = VigilSettings()
    assert s.bootstrap_servers == "kafka:9092" and not s.embedded
    assert s.partitions == 12
    assert s.window_lengths_s == (1800, 21600)  # sorted
    assert s.sepsis_levels == ((0.3, "medium"), (0.6, "high"))


def test_embedded_broker_by_default(monkeypatch) -> None:
    for k in ("VIGIL_KAFKA_URL", "VIGIL_EMBEDDED_BROKER_PORT"):
        monkeypatch.delenv(k, raising=False)
    s = VigilSettings()
    assert s.embedded and s.bootstrap_servers == "127.0.0.1:19092"
    assert s.horizon_ms == (21600 + max(7200, 21600)) * 1000  # window + label delay


@pytest.mark.parametrize("field,value", [("partitions", 0), ("window_lengths_s", (0,)),
                                         ("allowed_lateness_s", -1), ("web_port", 70000),
                                         ("unknown_field", 1)])
def test_bad_values_fail_at_construction(field, value) -> None:
    with pytest.raises(ValidationError):
        VigilSettings(**{field: value})


def test_dev_pseudonym_key_with_a_real_kafka_is_refused(monkeypatch) -> None:
    monkeypatch.delenv("VIGIL_PSEUDONYM_KEY", raising=False)
    with pytest.raises(ValidationError, match="public development key") as err:
        VigilSettings(kafka_url="kafka:9092")
    assert "VIGIL_PSEUDONYM_KEY" in str(err.value)
    VigilSettings()  # the embedded broker (the demo, one machine) still runs with it
    VigilSettings(kafka_url="kafka:9092", pseudonym_key="the-hospital-secret")


def test_a_validation_error_never_shows_a_secret() -> None:
    """pydantic prints the whole input of a failed model by default: the keys with it."""
    with pytest.raises(ValidationError) as err:
        VigilSettings(kafka_url="kafka:9092", pseudonym_key="pk-s3cret",
                      kafka_security_protocol="SASL_SSL", kafka_sasl_password="pw-s3cret")
    assert "VIGIL_KAFKA_SASL_MECHANISM" in str(err.value)
    assert "s3cret" not in str(err.value) and "s3cret" not in repr(err.value)


SECURE = dict(kafka_url="kafka:9093", pseudonym_key="k")


@pytest.mark.parametrize("kw,message", [
    (dict(kafka_security_protocol="SASL_SSL"), "VIGIL_KAFKA_SASL_MECHANISM"),
    (dict(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
          kafka_sasl_username="vigil"), "VIGIL_KAFKA_SASL_PASSWORD"),
    (dict(kafka_security_protocol="SSL", kafka_sasl_username="vigil"), "does not use SASL"),
    (dict(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
          kafka_sasl_username="u", kafka_sasl_password="p", kafka_ssl_cafile="/etc/hostname"),
     "does not use TLS"),
    (dict(kafka_security_protocol="SSL", kafka_ssl_cafile="/nonexistent/ca.pem"),
     "no readable file"),
    (dict(kafka_security_protocol="SSL", kafka_sasl_mechanism="GSSAPI"), "kafka_sasl_mechanism"),
    (dict(kafka_security_protocol="TLS"), "kafka_security_protocol"),
])
def test_incomplete_kafka_security_is_refused_at_the_door(kw, message) -> None:
    with pytest.raises(ValidationError, match=message):
        VigilSettings(**SECURE, **kw)


def test_the_embedded_broker_speaks_plaintext_only() -> None:
    with pytest.raises(ValidationError, match="embedded broker speaks PLAINTEXT"):
        VigilSettings(kafka_security_protocol="SSL")


def test_kafka_security_from_the_environment_and_never_printed(monkeypatch, tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not parsed by the settings, only checked to exist")
    for name, value in {"KAFKA_URL": "kafka-1:9093,kafka-2:9093", "PSEUDONYM_KEY": "pk-s3cret",
                        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                        "KAFKA_SASL_USERNAME": "vigil-worker",
                        "KAFKA_SASL_PASSWORD": "pw-s3cret", "KAFKA_SSL_CAFILE": str(ca),
                        "KAFKA_SSL_CERTFILE": "",  # compose's ${VAR:-}: unset
                        "KAFKA_SSL_CHECK_HOSTNAME": "false"}.items():
        monkeypatch.setenv(f"VIGIL_{name}", value)
    s = VigilSettings()
    assert s.kafka_sasl_password is not None
    assert s.kafka_sasl_password.get_secret_value() == "pw-s3cret"
    assert s.kafka_ssl_certfile is None and s.kafka_ssl_check_hostname is False
    shown = json.dumps(s.masked(), default=str)
    assert "s3cret" not in shown and "s3cret" not in repr(s) and "s3cret" not in str(s)
    assert json.loads(shown)["kafka_sasl_password"] == "********"
    assert json.loads(shown)["kafka_sasl_username"] == "vigil-worker"


def test_vigil_settings_command_masks_every_secret(monkeypatch) -> None:
    from typer.testing import CliRunner

    from vigil.cli import app

    monkeypatch.setenv("VIGIL_KAFKA_URL", "kafka:9093")
    monkeypatch.setenv("VIGIL_PSEUDONYM_KEY", "pk-s3cret")
    monkeypatch.setenv("VIGIL_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("VIGIL_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("VIGIL_KAFKA_SASL_USERNAME", "vigil")
    monkeypatch.setenv("VIGIL_KAFKA_SASL_PASSWORD", "pw-s3cret")
    result = CliRunner().invoke(app, ["settings"])
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output and '"kafka_sasl_username": "vigil"' in result.output
    monkeypatch.setenv("VIGIL_PSEUDONYM_KEY", DEV_PSEUDONYM_KEY)
    result = CliRunner().invoke(app, ["settings"])
    assert result.exit_code == 2 and "public development key" in result.output
    assert "s3cret" not in result.output
