"""The one typed settings object, read from ``VIGIL_*`` environment variables.

Nothing else in Vigil reads ``os.environ``: the CLI builds a :class:`VigilSettings` once and
passes it down, and tests build one directly with the values they need.
"""

from __future__ import annotations

import warnings
from functools import cached_property
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["VigilSettings", "DEV_PSEUDONYM_KEY"]

DEV_PSEUDONYM_KEY = "vigil-development-key-not-for-production"


class VigilSettings(BaseSettings):
    """Every tunable of a Vigil process; units are in the field names."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", frozen=True, extra="forbid")

    # --- broker -------------------------------------------------------------------------
    kafka_url: str | None = Field(
        default=None,
        description="Bootstrap servers of an external Kafka (host:port[,host:port]). "
        "Unset: Vigil starts and uses its embedded tansu broker.",
    )
    embedded_broker_port: int = Field(default=19092, ge=1, le=65535)

    # --- topics -------------------------------------------------------------------------
    topic_vitals: str = "vigil.vitals"
    topic_scores: str = "vigil.scores"
    topic_alerts: str = "vigil.alerts"
    topic_labels: str = "vigil.labels"
    topic_dlq: str = "vigil.dlq"
    topic_acks: str = "vigil.acks"
    partitions: int = Field(default=4, ge=1, le=256)

    # --- worker -------------------------------------------------------------------------
    app_id: str = Field(default="vigil", description="faust app id = consumer group id.")
    data_dir: str = Field(default=".vigil-state", description="faust table/state directory.")
    web_port: int = Field(default=6066, ge=0, le=65535)
    web_host: str = "127.0.0.1"
    session_timeout_s: float = Field(
        default=6.0,
        gt=0,
        description="Consumer group session timeout. A group join waits half of it on tansu.",
    )
    fetch_max_wait_ms: int = Field(
        default=50, ge=1, le=5000,
        description="How long a worker's fetch may wait for records (tansu holds it that long).",
    )
    batch_max_records: int = Field(default=256, ge=1)
    batch_within_s: float = Field(default=0.02, gt=0)
    score_batch_size: int = Field(
        default=64, ge=1, description="Fixed shape of every scorer call (rows are padded)."
    )
    log_level: str = "info"

    # --- event time and validation -------------------------------------------------------
    window_lengths_s: tuple[int, ...] = Field(
        default=(3600, 21600), description="Event-time window lengths for features."
    )
    allowed_lateness_s: int = Field(
        default=7200, ge=0, description="Events older than a patient's watermark minus this go to the DLQ."
    )
    label_delay_s: int = Field(
        default=21600, ge=0,
        description="Longest delay of an outcome label after its hour: history kept for learning.",
    )
    max_clock_skew_s: int = Field(
        default=300, ge=0, description="Events further than this in the future go to the DLQ."
    )

    # --- scoring ------------------------------------------------------------------------
    sepsis_scorer: Literal["model", "qsofa"] = Field(
        default="model",
        description="model: the trained hybrid quantum artifact; qsofa: the clinical score.",
    )
    sepsis_online: bool = Field(
        default=True,
        description="Stack the model with its online River model that learns from labels.")
    sepsis_model_path: str | None = Field(
        default=None, description="Artifact directory; unset: the artifact shipped with Vigil.")

    # --- alerting -----------------------------------------------------------------------
    sepsis_levels: tuple[tuple[float, str], ...] | None = Field(
        default=None,
        description="(risk threshold, severity) pairs for sepsis alerts; unset: the scorer's own.",
    )
    sepsis_alerts_per_patient_day: float | None = Field(
        default=None, gt=0,
        description="Use the artifact's levels chosen on training patients for this alert rate "
                    "(per patient-day, after the lifecycle); unset: the utility-optimal levels.")
    deterioration_levels: tuple[tuple[float, str], ...] | None = None
    alert_clear_after_s: int = Field(
        default=7200, ge=0, description="Risk must stay below the clear level this long to resolve."
    )
    alert_clear_ratio: float = Field(
        default=0.8, gt=0, le=1,
        description="Hysteresis: an alert clears only below this fraction of its raise threshold.")
    alert_refractory_s: int = Field(
        default=4 * 3600, ge=0,
        description="After an alert resolves, no new alert of that kind for the patient unless "
                    "the severity is higher than the last episode's.")
    alert_escalate_after_s: int = Field(
        default=1800, ge=10,
        description="An alert nobody acknowledged escalates (once, one level up) after this long.")
    alert_sweep_s: float = Field(
        default=30.0, ge=0,
        description="How often a worker escalates overdue alerts of live feeds that went quiet "
                    "(0: only when the patient's next record arrives).")
    patient_ttl_s: int = Field(
        default=72 * 3600, ge=1,
        description="A patient with no records for this long (wall clock) and no active alert "
                    "is removed from the table (a tombstone in its changelog).")
    alert_live_lag_s: int = Field(
        default=600, ge=0,
        description="A feed is live when its newest record reached Kafka within this of its "
                    "event time; replays of old data are not swept, so they stay deterministic.")

    # --- alert board ------------------------------------------------------------------
    board_host: str = Field(default="127.0.0.1",
                            description="Interface of `vigil board` (0.0.0.0 in a container).")
    board_port: int = Field(default=8088, ge=1, le=65535)

    # --- privacy ------------------------------------------------------------------------
    pseudonym_key: SecretStr = Field(
        default=SecretStr(DEV_PSEUDONYM_KEY),
        description="HMAC key turning source patient ids into pseudonyms at the edge.",
    )

    @field_validator("window_lengths_s")
    @classmethod
    def _windows_sorted(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(w <= 0 for w in v):
            raise ValueError("window lengths must be positive")
        return tuple(sorted(set(v)))

    @model_validator(mode="after")
    def _warn_dev_key(self) -> VigilSettings:
        if self.kafka_url and self.pseudonym_key.get_secret_value() == DEV_PSEUDONYM_KEY:
            warnings.warn(
                "VIGIL_PSEUDONYM_KEY is the development key while an external Kafka is used: "
                "set a secret key in production.",
                stacklevel=2,
            )
        return self

    @property
    def embedded(self) -> bool:
        return self.kafka_url is None

    @cached_property
    def bootstrap_servers(self) -> str:
        return self.kafka_url or f"127.0.0.1:{self.embedded_broker_port}"

    @property
    def all_topics(self) -> tuple[str, ...]:
        return (
            self.topic_vitals,
            self.topic_scores,
            self.topic_alerts,
            self.topic_labels,
            self.topic_dlq,
            self.topic_acks,
        )

    @property
    def horizon_ms(self) -> int:
        """How much event time a patient's window state must keep."""
        return (max(self.window_lengths_s)
                + max(self.allowed_lateness_s, self.label_delay_s)) * 1000

    def masked(self) -> dict[str, object]:
        """The resolved values with secrets masked, for `vigil settings` and start-up logs."""
        out = self.model_dump()
        out["pseudonym_key"] = "********"
        out["bootstrap_servers"] = self.bootstrap_servers
        return out
