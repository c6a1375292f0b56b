"""Deterioration / arrest: a trained score of the patient's course, NEWS2 as its fallback.

Scorer: the shipped artifact (``vigil/artifacts/deterioration-hybrid-qnn``, or
``VIGIL_DETERIORATION_MODEL_PATH``): the hybrid circuit stacked with LightGBM and an online
River model that learns the outcome of each finished stay (``VIGIL_DETERIORATION_ONLINE``),
trained by ``vigil train --kind deterioration`` on PhysioNet 2012 set A. No open data set
labels cardiac arrest: the label is in-hospital death, a proxy (as NEWS and eCART were
validated), and every figure says so. Without an artifact, or with
``VIGIL_DETERIORATION_SCORER=news2``, the published NEWS2 rule (RCP 2017): risk = NEWS2 / 20,
*high* at NEWS2 >= 7 (emergency response), *medium* for a single red parameter (a score of 3).

Levels: ``VIGIL_DETERIORATION_LEVELS`` (or ``VIGIL_ALERT_LEVELS``) when set; else the
artifact's levels for ``VIGIL_DETERIORATION_ALERTS_PER_PATIENT_DAY``; else the scorer's own
(the artifact's default alert rate, or NEWS2's).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path

from vigil.kinds.base import AlertKind, Evaluation, Levels, Training, chosen_levels, load_stack
from vigil.models.base import Scorer
from vigil.settings import VigilSettings

__all__ = ["KIND", "model_path", "shipped_model"]

log = logging.getLogger(__name__)

CITATION_2012 = ("Silva I et al. Predicting In-Hospital Mortality of ICU Patients: The "
                 "PhysioNet/Computing in Cardiology Challenge 2012. Comput Cardiol "
                 "2012;39:245-248")


def shipped_model() -> Path:
    return Path(str(files("vigil") / "artifacts" / "deterioration-hybrid-qnn"))


def model_path(settings: VigilSettings) -> Path:
    return (Path(settings.deterioration_model_path) if settings.deterioration_model_path
            else shipped_model())


def build(settings: VigilSettings, feature_names: tuple[str, ...]) -> Scorer:
    from vigil.models.clinical import News2Scorer

    path = model_path(settings)
    if settings.deterioration_scorer == "news2":
        return News2Scorer(feature_names)
    if not (path / "artifact.json").exists():
        if settings.deterioration_model_path:  # asked for, not found: never a silent swap
            raise FileNotFoundError(f"no deterioration artifact in {path}")
        log.warning("no deterioration artifact shipped: NEWS2 scores deterioration")
        return News2Scorer(feature_names)
    return load_stack(path, settings, feature_names, online=settings.deterioration_online,
                      learns_from="death", state_prefix=b"#online/deterioration/")


def choose_levels(settings: VigilSettings, scorer: Scorer) -> Levels:
    return chosen_levels(
        settings.deterioration_levels or settings.alert_levels.get("deterioration"),
        settings.deterioration_alerts_per_patient_day, scorer,
        "VIGIL_DETERIORATION_ALERTS_PER_PATIENT_DAY")


def headline(scorer: str, risk: float, details: Mapping[str, float]) -> str:
    news2 = details.get("news2")
    if scorer == "news2":
        return f"NEWS2 {news2:.0f}"
    # the model's risk is the calibrated probability of in-hospital death (PhysioNet 2012),
    # the proxy for deterioration it was trained on
    head = f"deterioration: {risk:.0%} risk of death in hospital"
    if news2 is not None and news2 == news2:  # not NaN
        return f"{head}, NEWS2 {news2:.0f}"
    return head


KIND = AlertKind(
    name="deterioration",
    label="Deterioration",
    build=build,
    choose_levels=choose_levels,
    headline=headline,
    evaluation=Evaluation(
        dataset="physionet2012",
        outcome="in-hospital death (PhysioNet 2012), a proxy: no open data labels arrest",
        runner="vigil.evaluation.deterioration:evaluate_deterioration"),
    training=Training(
        dataset="physionet2012",
        artifact="deterioration-hybrid-qnn",
        citation=CITATION_2012,
        label="in-hospital death (PhysioNet 2012 set A), a proxy for deterioration / arrest: "
              "no open data set labels arrest",
        learns_from="death",
        objective="auroc",
        stack=("gbm",),
        alerts_per_patient_day=0.25),
    description="Deterioration or arrest: the trained hybrid + LightGBM + online River score "
                "(in-hospital death as the proxy label); NEWS2 without an artifact.",
)
