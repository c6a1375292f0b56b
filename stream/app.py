"""Builds the faust app from settings; wiring only, no logic."""

from __future__ import annotations

import logging
from pathlib import Path

import faust

from vigil.kafka_config import faust_options
from vigil.settings import VigilSettings
from vigil.stream import transport

__all__ = ["build_app"]


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
        # broker URLs on Vigil's transport, and TLS/SASL credentials where configured
        **faust_options(settings, scheme=transport.SCHEME),
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
