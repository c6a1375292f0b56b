"""Deterioration / arrest: the published NEWS2 rule (RCP 2017).

Risk = NEWS2 / 20; *high* at NEWS2 >= 7 (emergency response), *medium* for a single red
parameter (a score of 3). No open data set labels arrest; the evaluation judges the scores
against in-hospital death on PhysioNet 2012, a proxy, and says so.

Levels: ``VIGIL_DETERIORATION_LEVELS`` (or ``VIGIL_ALERT_LEVELS``) when set, else NEWS2's.
"""

from __future__ import annotations

from collections.abc import Mapping

from vigil.kinds.base import AlertKind, Evaluation, Levels
from vigil.models.base import Scorer
from vigil.settings import VigilSettings

__all__ = ["KIND"]


def build(settings: VigilSettings, feature_names: tuple[str, ...]) -> Scorer:
    from vigil.models.clinical import News2Scorer

    return News2Scorer(feature_names)


def choose_levels(settings: VigilSettings, scorer: Scorer) -> Levels:
    return tuple(settings.deterioration_levels or settings.alert_levels.get("deterioration")
                 or scorer.levels)


def headline(scorer: str, risk: float, details: Mapping[str, float]) -> str:
    if scorer == "news2":
        return f"NEWS2 {details['news2']:.0f}"
    return f"risk {risk:.0%}"


KIND = AlertKind(
    name="deterioration",
    label="Deterioration",
    build=build,
    choose_levels=choose_levels,
    headline=headline,
    evaluation=Evaluation(
        dataset="physionet2012",
        outcome="in-hospital death (PhysioNet 2012), a proxy: no open data labels arrest",
        runner="vigil.evaluation.run:evaluate_deterioration"),
    description="Deterioration or arrest: NEWS2 >= 7 or a red parameter.",
)
