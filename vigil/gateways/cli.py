"""What the ``vigil hl7-listen / fhir-listen / hl7-send`` commands call (kept thin there)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from vigil.settings import VigilSettings

__all__ = ["hl7_listen", "fhir_listen", "hl7_send"]


def hl7_listen(settings: VigilSettings, host: str | None = None, port: int | None = None) -> None:
    from vigil.gateways.runner import serve_hl7

    asyncio.run(serve_hl7(settings, host=host, port=port))


def fhir_listen(settings: VigilSettings, host: str | None = None,
                port: int | None = None) -> None:
    from vigil.gateways.runner import serve_fhir

    asyncio.run(serve_fhir(settings, host=host, port=port))


def hl7_send(settings: VigilSettings, path: Path | None, *, host: str | None = None,
             port: int | None = None, speed: float = 0.0, patients: int | None = None,
             labels: bool = False) -> dict:
    from vigil.gateways.sender import send_path
    from vigil.sample import sample_path

    stats = send_path(settings, path or sample_path(), host=host or settings.hl7_host,
                      port=port or settings.hl7_port, limit=patients, speed=speed,
                      labels=labels)
    return stats.as_dict()
