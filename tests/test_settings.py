"""The one settings object: VIGIL_* environment, validation at construction."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from vigil.settings import VigilSettings


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


def test_dev_pseudonym_key_with_a_real_kafka_warns() -> None:
    with pytest.warns(UserWarning, match="development key"):
        VigilSettings(kafka_url="kafka:9092")
