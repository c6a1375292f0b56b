"""The alert kinds registry: one module per kind, listed in ``VIGIL_KINDS``.

Each module defines ``KIND``, an :class:`~vigil.kinds.base.AlertKind`. The worker, the
metrics' label sets, the board, the dashboard generator, the rule tests, evaluation and the
CLI iterate over :func:`registered`; none of them names a kind. Modules are imported on
demand and build their (heavy) scorers only when deployed, so listing kinds is cheap.

>>> [k.name for k in registered(("vigil.kinds.sepsis", "vigil.kinds.deterioration"))]
['sepsis', 'deterioration']
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from vigil.kinds.base import (
    ActiveKind,
    AlertKind,
    Evaluation,
    Levels,
    Training,
    plain_headline,
    rules_from,
)
from vigil.settings import VigilSettings

__all__ = ["ActiveKind", "AlertKind", "Evaluation", "Levels", "Training", "deploy",
           "kind_named", "plain_headline", "registered", "rules_from"]

DEFAULT = ("vigil.kinds.sepsis", "vigil.kinds.deterioration")


def _load(module: str) -> AlertKind:
    kind = getattr(importlib.import_module(module), "KIND", None)
    if not isinstance(kind, AlertKind):
        raise ValueError(f"{module} does not define KIND = AlertKind(...)")
    return kind


def registered(modules: Iterable[str] | VigilSettings | None = None) -> tuple[AlertKind, ...]:
    """The kinds named by ``modules`` (default: settings' ``kinds``), in order, unique."""
    if modules is None:
        modules = DEFAULT
    elif isinstance(modules, VigilSettings):
        modules = modules.kinds
    kinds = tuple(_load(m) for m in modules)
    names = [k.name for k in kinds]
    if len(set(names)) != len(names):
        raise ValueError(f"two alert kinds share a name: {names}")
    return kinds


def kind_named(name: str, modules: Iterable[str] | VigilSettings | None = None) -> AlertKind:
    """The registered kind called ``name`` (a built-in one when ``modules`` does not list it)."""
    for kind in registered(modules) + registered(DEFAULT):
        if kind.name == name:
            return kind
    raise KeyError(f"no alert kind {name!r}")


def deploy(settings: VigilSettings, feature_names: tuple[str, ...]) -> list[ActiveKind]:
    """Every registered kind as this worker runs it."""
    return [k.deploy(settings, feature_names) for k in registered(settings)]
