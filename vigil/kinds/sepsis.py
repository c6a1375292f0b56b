"""Sepsis: the hybrid quantum model stacked with LightGBM and its online River model (or qSOFA).

Scorer: the shipped artifact (``vigil/artifacts/sepsis-hybrid-qnn``, or
``VIGIL_SEPSIS_MODEL_PATH``): the hybrid circuit and LightGBM stacked with the online model
that learns the delayed PhysioNet 2019 sepsis labels (``VIGIL_SEPSIS_ONLINE``), the stack
fitted on the validation patients' hours before onset; ``VIGIL_SEPSIS_SCORER=qsofa`` uses
the published qSOFA rule instead (Seymour 2016 / Sepsis-3).

Levels: ``VIGIL_SEPSIS_LEVELS`` (or ``VIGIL_ALERT_LEVELS``) when set; else those the artifact
chose on its validation patients for ``VIGIL_SEPSIS_ALERTS_PER_PATIENT_DAY``; else the
scorer's own (utility-optimal for the model, qSOFA >= 2 for the rule).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path

from vigil.kinds.base import AlertKind, Evaluation, Levels, Training, chosen_levels, load_stack
from vigil.models.base import Scorer
from vigil.settings import VigilSettings

__all__ = ["KIND", "model_path", "shipped_model"]


def shipped_model() -> Path:
    return Path(str(files("vigil") / "artifacts" / "sepsis-hybrid-qnn"))


def model_path(settings: VigilSettings) -> Path:
    return Path(settings.sepsis_model_path) if settings.sepsis_model_path else shipped_model()


def build(settings: VigilSettings, feature_names: tuple[str, ...]) -> Scorer:
    from vigil.models.clinical import QsofaScorer

    if settings.sepsis_scorer == "qsofa":
        return QsofaScorer(feature_names)
    return load_stack(model_path(settings), settings, feature_names,
                      online=settings.sepsis_online, learns_from="sepsis",
                      state_prefix=b"#online/")


def choose_levels(settings: VigilSettings, scorer: Scorer) -> Levels:
    return chosen_levels(settings.sepsis_levels or settings.alert_levels.get("sepsis"),
                         settings.sepsis_alerts_per_patient_day, scorer,
                         "VIGIL_SEPSIS_ALERTS_PER_PATIENT_DAY")


def headline(scorer: str, risk: float, details: Mapping[str, float]) -> str:
    if scorer == "qsofa":
        return f"qSOFA {details['qsofa']:.0f}/3"
    # the model's risk is the calibrated probability of the hour's PhysioNet 2019 label,
    # which is 1 from 6 h before clinical onset (Reyna 2020): sepsis within 6 h
    head = f"sepsis risk {risk:.0%} within 6 h"
    if "qsofa" in details and details["qsofa"] == details["qsofa"]:  # not NaN
        return f"{head} (qSOFA {details['qsofa']:.0f}/3)"
    return head


KIND = AlertKind(
    name="sepsis",
    label="Sepsis",
    build=build,
    choose_levels=choose_levels,
    headline=headline,
    evaluation=Evaluation(
        dataset="physionet2019",
        outcome="sepsis (Sepsis-3 onset, PhysioNet/CinC Challenge 2019 labels)",
        runner="vigil.evaluation.run:evaluate_sepsis"),
    training=Training(
        dataset="physionet2019",
        artifact="sepsis-hybrid-qnn",
        citation=("Reyna MA et al. Early Prediction of Sepsis From Clinical Data: the "
                  "PhysioNet/Computing in Cardiology Challenge 2019. Crit Care Med "
                  "2020;48(2):210-217. doi:10.13026/v64v-d857"),
        label="sepsis (PhysioNet 2019 hourly label: 1 from 6 h before Sepsis-3 onset)",
        learns_from="sepsis",
        objective="utility",
        stack=("gbm",),
        stack_on="pre_onset"),
    description="Sepsis in the next hours: the hybrid quantum model with online learning.",
)
