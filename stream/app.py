"""Builds the faust app and the processor from settings; wiring only, no logic."""

from __future__ import annotations

import logging
from importlib.resources import files
from pathlib import Path

import faust

from vigil.alerts.lifecycle import Rules
from vigil.alerts.policy import Policy
from vigil.models.base import Scorer
from vigil.models.clinical import News2Scorer, QsofaScorer
from vigil.settings import VigilSettings
from vigil.stream import transport
from vigil.stream.features import FeatureSpec
from vigil.stream.learning import OnlineSepsis
from vigil.stream.processor import Processor
from vigil.stream.windows import WindowSpec

__all__ = ["alert_rules", "build_app", "build_processor", "model_path", "online_sepsis", "sepsis_scorer",
           "shipped_model"]


def build_processor(settings: VigilSettings) -> Processor:
    windows = WindowSpec.from_seconds(settings.window_lengths_s, settings.allowed_lateness_s,
                                      settings.label_delay_s)
    names = FeatureSpec(windows).names
    scorers = [sepsis_scorer(settings, names), News2Scorer(names)]
    online = online_sepsis(settings, scorers[0])
    overrides = {"sepsis": settings.sepsis_levels, "deterioration": settings.deterioration_levels}
    ratio = settings.alert_clear_ratio
    policies = {s.target: Policy.for_scorer(s, overrides[s.target], ratio) for s in scorers}
    if online is not None and not settings.sepsis_levels:  # the deployed score's own levels
        levels = online.levels
        if settings.sepsis_alerts_per_patient_day is not None:
            levels = online.deployed.levels_for_rate(settings.sepsis_alerts_per_patient_day)
        policies["sepsis"] = Policy("sepsis", levels, clear_ratio=ratio)
    elif settings.sepsis_alerts_per_patient_day is not None and not settings.sepsis_levels:
        raise ValueError("VIGIL_SEPSIS_ALERTS_PER_PATIENT_DAY needs the deployed model with "
                         "online learning (its artifact holds the levels by alert rate)")
    return Processor(
        windows,
        scorers,
        policies=policies,
        score_batch_size=settings.score_batch_size,
        max_clock_skew_ms=settings.max_clock_skew_s * 1000,
        rules=alert_rules(settings),
        online=online,
    )


def alert_rules(settings: VigilSettings) -> Rules:
    return Rules(clear_after_ms=settings.alert_clear_after_s * 1000,
                 refractory_ms=settings.alert_refractory_s * 1000,
                 escalate_after_ms=settings.alert_escalate_after_s * 1000)


def sepsis_scorer(settings: VigilSettings, names: tuple[str, ...]) -> Scorer:
    """The deployed sepsis scorer: the trained hybrid quantum model unless told otherwise."""
    if settings.sepsis_scorer == "qsofa":
        return QsofaScorer(names)
    from vigil.models.hybrid_scorer import HybridScorer

    return HybridScorer.load(model_path(settings), names, settings.window_lengths_s, settings.allowed_lateness_s)


def model_path(settings: VigilSettings) -> Path:
    return Path(settings.sepsis_model_path) if settings.sepsis_model_path else shipped_model()


def online_sepsis(settings: VigilSettings, scorer: Scorer) -> OnlineSepsis | None:
    """The hybrid stacked with the online River model, when the artifact has them."""
    from vigil.models.deployed import DeployedSepsis
    from vigil.models.hybrid_scorer import HybridScorer

    path = model_path(settings)
    if not (settings.sepsis_online and isinstance(scorer, HybridScorer)
            and DeployedSepsis.present(path)):
        return None
    return OnlineSepsis(DeployedSepsis.load(path), scorer.norm)


def shipped_model() -> Path:
    return Path(str(files("vigil") / "artifacts" / "sepsis-hybrid-qnn"))


def build_app(settings: VigilSettings) -> faust.App:
    """The faust app: consumer group, tables and web server (outputs and the changelog are
    written by :class:`~vigil.stream.publisher.OutputPublisher`)."""
    # aiokafka and faust build DEBUG log records on every send unless told otherwise:
    # ~14% of a worker's CPU in a profile. Vigil's own loggers keep the chosen level.
    for name in ("aiokafka", "faust", "mode"):
        logging.getLogger(name).setLevel(logging.INFO)
    datadir = Path(settings.data_dir) / f"{settings.app_id}-{settings.web_port}"
    datadir.mkdir(parents=True, exist_ok=True)
    transport.configure(settings.fetch_max_wait_ms)
    return faust.App(
        settings.app_id,
        broker=[f"{transport.SCHEME}://{h}" for h in settings.bootstrap_servers.split(",")],
        store="memory://",
        topic_partitions=settings.partitions,
        topic_disable_leader=True,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_s / 6),
        consumer_auto_offset_reset="earliest",
        web_enabled=True,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        datadir=str(datadir),
        stream_wait_empty=True,
    )
