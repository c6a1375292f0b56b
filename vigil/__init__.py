"""Vigil: real-time ICU deterioration and sepsis alerting on a Kafka-protocol stream.

The packages follow the data path: ``vigil.stream`` (ingest, validation, windows, features,
agents) -> ``vigil.models`` (scorers) -> ``vigil.alerts`` (decisions and publishing).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vigil")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
