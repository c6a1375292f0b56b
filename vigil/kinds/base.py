"""What makes an alert kind, apart from the engine that runs it.

As Quix Streams keeps window *definitions* apart from the window engine, an
:class:`AlertKind` only declares: its name on the wire and for people, how to build its
deployed scorer from settings, how its levels are chosen, lifecycle overrides, the headline
its alerts open with, and where it is evaluated. The processor runs whatever kinds it is
given (:class:`ActiveKind`); nothing downstream names a kind.

A new kind is one module that defines ``KIND = AlertKind(...)`` (plus its artifact), listed
in ``VIGIL_KINDS``; see :mod:`vigil.kinds`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vigil.alerts.lifecycle import Rules
from vigil.alerts.policy import Policy
from vigil.models.base import Scorer
from vigil.settings import VigilSettings

__all__ = ["ActiveKind", "AlertKind", "Evaluation", "Levels", "Training", "chosen_levels",
           "load_stack", "plain_headline", "rules_from"]

Levels = tuple[tuple[float, str], ...]


def rules_from(settings: VigilSettings) -> Rules:
    """The lifecycle timings of ``VIGIL_ALERT_*`` (a kind may override some)."""
    return Rules(clear_after_ms=settings.alert_clear_after_s * 1000,
                 refractory_ms=settings.alert_refractory_s * 1000,
                 escalate_after_ms=settings.alert_escalate_after_s * 1000)


def load_stack(path: Path, settings: VigilSettings, feature_names: tuple[str, ...], *,
               online: bool, learns_from: str, state_prefix: bytes) -> Scorer:
    """A trained kind's deployed scorer from its artifact directory: the hybrid, stacked with
    its members and online model when the artifact has a stack and ``online`` is on."""
    from vigil.models.deployed import DeployedStack, StackedScorer
    from vigil.models.hybrid_scorer import HybridScorer

    hybrid = HybridScorer.load(path, feature_names, settings.window_lengths_s,
                               settings.allowed_lateness_s)
    if not (online and DeployedStack.present(path)):
        return hybrid
    return StackedScorer.around(hybrid, path, learns_from=learns_from, state_prefix=state_prefix)


def chosen_levels(explicit: Levels | None, rate: float | None, scorer: Scorer,
                  rate_setting: str) -> Levels:
    """Explicit levels when set; else the artifact's levels for alert ``rate`` (per
    patient-day, after the lifecycle); else the scorer's own."""
    if explicit:
        return tuple(explicit)
    if rate is not None:
        levels_for_rate = getattr(scorer, "levels_for_rate", None)
        if levels_for_rate is None:
            raise ValueError(f"{rate_setting} needs the trained model with online learning "
                             "(its artifact holds the levels by alert rate)")
        return levels_for_rate(rate)
    return tuple(scorer.levels)


def plain_headline(scorer: str, risk: float, details: Mapping[str, float]) -> str:
    """``"risk 16%"``: the opening words of an alert whose kind says nothing better."""
    return f"risk {risk:.0%}"


@dataclass(frozen=True)
class Evaluation:
    """Where ``vigil evaluate`` judges a kind: the records it needs and what it measures.

    ``runner`` is ``"module:function"`` (the evaluation layer sits above the kinds), called
    as ``runner(data, out, settings, model=..., limit=..., exclude_training=...)``.
    """

    dataset: str  # "physionet2019" (.psv) | "physionet2012" (.txt)
    outcome: str  # what the label is, in words (a proxy says so)
    runner: str


@dataclass(frozen=True)
class Training:
    """How ``vigil train`` makes a kind's artifact: the data, the label, what is optimised.

    The training engine (:mod:`vigil.evaluation.training`) is shared: every trained kind gets
    the hybrid circuit, its same-size classical ablation, LightGBM, an online River model
    warm-started on the same rows, and a stack of them fitted on the validation patients.
    """

    dataset: str  # "physionet2019" | "physionet2012": what the --data archive must hold
    artifact: str  # directory name of the shipped artifact, e.g. "sepsis-hybrid-qnn"
    citation: str  # the data set, cited wherever results on it appear
    label: str  # what the rows' label is, in words (a proxy says so)
    #: the online model learns LabelRecords of this kind ("sepsis" hourly, "death" per stay)
    learns_from: str
    #: "utility": the PhysioNet 2019 utility picks the epoch and the levels; "auroc": the
    #: validation AUROC picks the epoch, the levels come from the alert-rate target
    objective: str = "utility"
    #: fixed models stacked beside the hybrid (besides the online model), e.g. ("gbm",)
    stack: tuple[str, ...] = ()
    #: default alerts per patient-day when the levels come from alert rates
    alerts_per_patient_day: float | None = None
    #: the validation rows the stack is fitted on: "all", or "pre_onset" (a septic
    #: patient's hours before onset and every hour of the others: an early warning is
    #: worth what it says before the diagnosis is known)
    stack_on: str = "all"


@dataclass(frozen=True)
class AlertKind:
    """One alert kind: everything that makes it one, nothing that runs it."""

    name: str  # AlertEvent.kind, the metric label, the key of ScoreRecord.risks
    label: str  # for people: the board, the demo
    build: Callable[[VigilSettings, tuple[str, ...]], Scorer]  # the deployed scorer
    #: levels from settings and the scorer; default: VIGIL_ALERT_LEVELS[name], else the scorer's
    choose_levels: Callable[[VigilSettings, Scorer], Levels] | None = None
    headline: Callable[[str, float, Mapping[str, float]], str] = plain_headline
    #: lifecycle overrides for this kind (fields of alerts.lifecycle.Rules, milliseconds)
    rules: Mapping[str, int] = field(default_factory=dict)
    evaluation: Evaluation | None = None
    training: Training | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or not self.name.islower():
            raise ValueError(f"alert kind name {self.name!r}: lower-case letters, digits, _")
        unknown = set(self.rules) - {f.name for f in dataclasses.fields(Rules)}
        if unknown:
            raise ValueError(f"{self.name}: unknown lifecycle rules {sorted(unknown)}")

    def deploy(self, settings: VigilSettings, feature_names: tuple[str, ...]) -> ActiveKind:
        """The kind as a worker runs it, from settings."""
        scorer = self.build(settings, feature_names)
        if self.choose_levels is not None:
            levels = self.choose_levels(settings, scorer)
        else:
            levels = tuple(settings.alert_levels.get(self.name) or scorer.levels)
        return self.activate(scorer, levels, settings.alert_clear_ratio, rules_from(settings))

    def activate(self, scorer: Scorer, levels: Levels | None = None, clear_ratio: float = 0.8,
                 rules: Rules | None = None) -> ActiveKind:
        """The kind around a given scorer (tests, evaluation): its levels unless told."""
        policy = Policy(self.name, tuple(levels or scorer.levels), scorer.floor_flag,
                        clear_ratio=clear_ratio)
        return ActiveKind(self, scorer, policy,
                          dataclasses.replace(rules or Rules(), **dict(self.rules)))


@dataclass(frozen=True)
class ActiveKind:
    """A kind as one worker runs it: its deployed scorer, alert levels and lifecycle rules."""

    kind: AlertKind
    scorer: Scorer
    policy: Policy
    rules: Rules

    @property
    def name(self) -> str:
        return self.kind.name

    def headline(self, risk: float, details: Mapping[str, float]) -> str:
        return self.kind.headline(self.scorer.name, risk, details)
