"""The one typed settings object, read from ``VIGIL_*`` environment variables.

Nothing else in Vigil reads ``os.environ``: the CLI builds a :class:`VigilSettings` once and
passes it down, and tests build one directly with the values they need.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["VigilSettings", "DEV_PSEUDONYM_KEY"]

DEV_PSEUDONYM_KEY = "vigil-development-key-not-for-production"


class VigilSettings(BaseSettings):
    """Every tunable of a Vigil process; units are in the field names."""

    # hide_input_in_errors: a validation error would otherwise print the whole input,
    # VIGIL_PSEUDONYM_KEY and VIGIL_KAFKA_SASL_PASSWORD included, on every failed start
    model_config = SettingsConfigDict(env_prefix="VIGIL_", frozen=True, extra="forbid",
                                      hide_input_in_errors=True)

    # --- broker -------------------------------------------------------------------------
    kafka_url: str | None = Field(
        default=None,
        description="Bootstrap servers of an external Kafka (host:port[,host:port]). "
        "Unset: Vigil starts and uses its embedded tansu broker.",
    )
    embedded_broker_port: int = Field(default=19092, ge=1, le=65535)

    # --- kafka security -------------------------------------------------------------------
    # How every Kafka client of Vigil (faust, aiokafka, kafka-python) reaches the broker.
    # Turned into client options in one place only, vigil/kafka_config.py, so that no client
    # can be left on PLAINTEXT by accident. The embedded broker speaks PLAINTEXT only.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT"] = Field(
        default="PLAINTEXT",
        description="SSL: TLS (the broker's certificate is verified); SASL_SSL: TLS plus a SASL "
                    "login; SASL_PLAINTEXT: a SASL login without encryption (not for patient "
                    "data outside one host).")
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism; required with SASL_*.")
    kafka_sasl_username: str | None = Field(default=None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="SASL password: never printed by `vigil settings` or a log.")
    kafka_ssl_cafile: str | None = Field(
        default=None,
        description="PEM file of the CA(s) that signed the broker's certificate; unset: the "
                    "system's trusted CAs.")
    kafka_ssl_certfile: str | None = Field(
        default=None, description="PEM client certificate (mutual TLS), may hold the key too.")
    kafka_ssl_keyfile: str | None = Field(
        default=None, description="PEM private key of the client certificate (unencrypted).")
    kafka_ssl_check_hostname: bool = Field(
        default=True,
        description="Check that the broker's certificate names the host connected to. The "
                    "certificate itself is always verified against the CA.")

    @field_validator("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password",
                     "kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, v: object) -> object:
        # docker-compose passes `${VAR:-}` as an empty string: that means "not set"
        if isinstance(v, SecretStr):
            return None if not v.get_secret_value() else v
        return None if isinstance(v, str) and not v.strip() else v

    @model_validator(mode="after")
    def _kafka_security_is_complete(self) -> VigilSettings:
        # Refused here, at the door: a half-configured client would otherwise fail later with
        # a vague "unable to bootstrap", or worse, silently ignore what was set.
        import os

        protocol = self.kafka_security_protocol
        sasl = protocol.startswith("SASL_")
        tls = protocol.endswith("SSL")
        if self.kafka_url is None and protocol != "PLAINTEXT":
            raise ValueError(f"VIGIL_KAFKA_SECURITY_PROTOCOL={protocol} needs VIGIL_KAFKA_URL: "
                             "the embedded broker speaks PLAINTEXT only")
        given_sasl = [n for n in ("kafka_sasl_mechanism", "kafka_sasl_username",
                                  "kafka_sasl_password") if getattr(self, n) is not None]
        if sasl:
            missing = [n for n in ("kafka_sasl_mechanism", "kafka_sasl_username",
                                   "kafka_sasl_password") if n not in given_sasl]
            if missing:
                raise ValueError(f"VIGIL_KAFKA_SECURITY_PROTOCOL={protocol} needs "
                                 + ", ".join(f"VIGIL_{n.upper()}" for n in missing))
        elif given_sasl:
            raise ValueError(", ".join(f"VIGIL_{n.upper()}" for n in given_sasl)
                             + f" set, but VIGIL_KAFKA_SECURITY_PROTOCOL={protocol} does not "
                             "use SASL (SASL_SSL or SASL_PLAINTEXT does)")
        files = {n: getattr(self, n) for n in ("kafka_ssl_cafile", "kafka_ssl_certfile",
                                               "kafka_ssl_keyfile") if getattr(self, n)}
        if files and not tls:
            raise ValueError(", ".join(f"VIGIL_{n.upper()}" for n in files) + " set, but "
                             f"VIGIL_KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS "
                             "(SSL or SASL_SSL does)")
        for name, path in files.items():
            if not os.path.isfile(path) or not os.access(path, os.R_OK):
                raise ValueError(f"VIGIL_{name.upper()}={path}: no readable file there")
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise ValueError("VIGIL_KAFKA_SSL_KEYFILE needs VIGIL_KAFKA_SSL_CERTFILE")
        return self

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
    kafka_leave_group: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Whether a stopping worker sends LeaveGroup (its partitions move at once) "
                    "or lets its group session expire (they move after the session timeout). "
                    "auto: off on tansu, whose coordinator can keep a departed member as the "
                    "forming group's leader (vigil/group_leave.py), on elsewhere.")
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
    broker_check_s: float = Field(
        default=2.0, ge=0,
        description="How often a worker checks that the broker still holds what it read and "
                    "wrote (a restarted in-memory broker does not); on a loss it exits with "
                    "code 69 (0: never check).")
    shutdown_timeout_s: float = Field(
        default=30.0, gt=0,
        description="A worker that got SIGTERM/SIGINT and has not stopped gracefully after "
                    "this long exits by force (code 75); uncommitted input is re-processed.")
    stall_timeout_s: float = Field(
        default=300.0, ge=0,
        description="A worker in a rebalance or table recovery that makes no progress (no "
                    "new generation, no changelog record recovered) for this long exits with "
                    "code 76 for its supervisor to restart it (0: never).")
    label_idle_s: float = Field(
        default=2.0, ge=0,
        description="How long a vitals batch waits for the labels partition to catch up to "
                    "its hour before going on without (Kafka Streams' max.task.idle.ms), and "
                    "how long a partition's vitals must be quiet before its queued labels are "
                    "learned by the wall clock (vigil.stream.label_queue).")
    max_clock_skew_s: int = Field(
        default=300, ge=0, description="Events further than this in the future go to the DLQ."
    )

    # --- scoring ------------------------------------------------------------------------
    kinds: tuple[str, ...] = Field(
        default=("vigil.kinds.sepsis", "vigil.kinds.deterioration"),
        description="Alert kinds, one module each (defining KIND = AlertKind(...)), as a "
                    "JSON list of import paths.")
    sepsis_scorer: Literal["model", "qsofa"] = Field(
        default="model",
        description="model: the trained hybrid quantum artifact; qsofa: the clinical score.",
    )
    sepsis_online: bool = Field(
        default=True,
        description="Stack the model with its online River model that learns from labels.")
    sepsis_model_path: str | None = Field(
        default=None, description="Artifact directory; unset: the artifact shipped with Vigil.")
    deterioration_scorer: Literal["model", "news2"] = Field(
        default="model",
        description="model: the trained deterioration artifact (in-hospital death, a proxy), "
                    "NEWS2 when none is found; news2: the published NEWS2 rule.")
    deterioration_online: bool = Field(
        default=True,
        description="Stack the deterioration model with its online River model (learns from "
                    "the outcome labels of finished stays).")
    deterioration_model_path: str | None = Field(
        default=None, description="Deterioration artifact directory; unset: the shipped one.")

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
    deterioration_alerts_per_patient_day: float | None = Field(
        default=None, gt=0,
        description="Use the deterioration artifact's levels for this alert rate (per "
                    "patient-day, after the lifecycle); unset: the artifact's default.")
    alert_levels: dict[str, tuple[tuple[float, str], ...]] = Field(
        default_factory=dict,
        description='(risk threshold, severity) pairs by kind name, as JSON, e.g. '
                    '{"arrest": [[0.3, "medium"], [0.6, "high"]]}; unset: the scorer\'s own.')
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
    # sign-in is always required (docs/security.md); these say how, not whether
    board_users_file: str | None = Field(
        default=None,
        description="Accounts and wall-screen tokens of the board (`vigil users`); unset: "
                    "board-users.json in VIGIL_DATA_DIR.")
    board_public_urls: str = Field(
        default="",
        description="Comma-separated addresses browsers reach the board at "
                    "(https://vigil.example.org): the only Origins a state-changing request "
                    "may come from; a request to an https one gets a Secure session cookie. "
                    "Empty: the request's own scheme and Host.")
    board_session_idle_s: int = Field(
        default=1800, ge=60,
        description="A sign-in session ends after this long without a request (an open "
                    "board page keeps it alive).")
    board_session_max_s: int = Field(
        default=12 * 3600, ge=60, description="A sign-in session ends this long after sign-in.")
    board_screen_session_max_s: int = Field(
        default=7 * 86400, ge=60,
        description="Lifetime of a session opened with a one-time wall-screen token.")
    board_login_max_failures: int = Field(
        default=5, ge=1,
        description="Failed sign-ins per client address, and per user name, within "
                    "VIGIL_BOARD_LOGIN_WINDOW_S before further attempts get 429.")
    board_login_window_s: int = Field(default=300, ge=1)
    board_trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses/CIDRs of reverse proxies whose identity "
                    "headers (X-Forwarded-User/-Email/-Groups, X-Auth-Request-*) and "
                    "X-Forwarded-For/-Proto the board believes; from any other peer they "
                    "are ignored. Empty: single sign-on through a proxy is off.")
    board_proxy_groups: str = Field(
        default="",
        description='JSON object: identity-provider group -> "nurse:UNITS" or '
                    '"viewer:UNITS" (UNITS comma-separated or *), e.g. '
                    '{"icu-micu-nurses": "nurse:MICU", "rrt": "nurse:*"}.')
    board_sse_per_session: int = Field(
        default=4, ge=1, description="Open /events streams per session (429 beyond).")
    board_sse_per_client: int = Field(
        default=16, ge=1, description="Open /events streams per client address (429 beyond).")
    board_sse_total: int = Field(
        default=200, ge=1, description="Open /events streams in all (503 beyond).")

    @field_validator("board_trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, v: str) -> str:
        import ipaddress

        for item in (x.strip() for x in v.split(",")):
            if item:
                ipaddress.ip_network(item, strict=False)  # ValueError names the bad one
        return v

    @field_validator("board_proxy_groups")
    @classmethod
    def _groups_map_to_roles(cls, v: str) -> str:
        import json

        if not v.strip():
            return v
        groups = json.loads(v)
        if not isinstance(groups, dict) or not all(
                isinstance(spec, str) and spec.partition(":")[0] in ("nurse", "viewer")
                and spec.partition(":")[2].strip() for spec in groups.values()):
            raise ValueError('expected {"group": "nurse:UNITS" | "viewer:UNITS", ...}')
        return v

    @field_validator("board_public_urls")
    @classmethod
    def _public_urls_are_origins(cls, v: str) -> str:
        from urllib.parse import urlsplit

        for url in (x.strip() for x in v.split(",")):
            if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc):
                raise ValueError(f"not an http(s) address: {url}")
        return v

    @property
    def board_users_path(self) -> str:
        """Where the board's accounts are: VIGIL_BOARD_USERS_FILE or the data dir's."""
        import os

        return self.board_users_file or os.path.join(self.data_dir, "board-users.json")

    # --- gateways -----------------------------------------------------------------------
    hl7_host: str = Field(default="127.0.0.1",
                          description="Interface of `vigil hl7-listen` (0.0.0.0 in a container).")
    hl7_port: int = Field(default=2575, ge=1, le=65535,
                          description="MLLP port of `vigil hl7-listen` (2575: IANA's HL7 port).")
    hl7_timezone: str = Field(
        default="UTC",
        description="IANA zone of the hospital (e.g. Europe/Berlin): an HL7 timestamp without an "
                    "offset is read in it. Set it: the default UTC is logged as a warning.")
    fhir_host: str = Field(default="127.0.0.1", description="Interface of `vigil fhir-listen`.")
    fhir_port: int = Field(default=8090, ge=1, le=65535,
                           description="Port of `vigil fhir-listen` (/fhir and /metrics).")
    gateway_metrics_port: int = Field(
        default=9575, ge=0, le=65535,
        description="Port of /metrics and /health of `vigil hl7-listen` (0: not served).")
    gateway_max_message_bytes: int = Field(
        default=1 << 20, ge=1024, le=16 << 20,
        description="Largest HL7 message / FHIR request body; a larger one is refused.")
    gateway_idle_timeout_s: float = Field(
        default=300.0, gt=0,
        description="An MLLP connection that sends nothing for this long is closed.")
    gateway_read_timeout_s: float = Field(
        default=10.0, gt=0,
        description="A started HL7 message must be complete within this long (slow senders).")
    gateway_max_connections: int = Field(
        default=256, ge=1, description="Open MLLP connections at most; more are refused.")
    gateway_ack_timeout_s: float = Field(
        default=5.0, gt=0,
        description="Longest wait for the broker's acknowledgement; then an error ACK (AR) or "
                    "HTTP 503 tells the sender to resend later.")
    gateway_patient_namespace: str = Field(
        default="mrn", min_length=1, max_length=64,
        description="Pseudonym namespace of HL7 PID-3 / FHIR subject identifiers (one MRN space).")

    @field_validator("hl7_timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {v!r}") from exc
        return v

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
    def _no_dev_key_with_external_kafka(self) -> VigilSettings:
        # The development key is public (it is in this file): anyone could hash candidate
        # patient ids with it and re-identify every pseudonym on the topics. The embedded
        # broker lives and dies with the demo on one machine; an external Kafka holds real
        # feeds, so there a missing key is a start-up error, not a warning nobody reads.
        if self.kafka_url and self.pseudonym_key.get_secret_value() == DEV_PSEUDONYM_KEY:
            raise ValueError(
                "VIGIL_PSEUDONYM_KEY is the public development key while an external Kafka "
                "(VIGIL_KAFKA_URL) is used: pseudonyms made with it can be reversed. Set "
                "VIGIL_PSEUDONYM_KEY to the hospital's secret (the same on every Vigil "
                "process), e.g. from `python -c 'import secrets; print(secrets.token_urlsafe(32))'`.")
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
        # every secret, not only the ones named here: a SecretStr field is masked by type
        for name, value in out.items():
            if isinstance(value, SecretStr):
                out[name] = "********"
        out["bootstrap_servers"] = self.bootstrap_servers
        return out
