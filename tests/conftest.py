"""Shared fixtures: a real embedded broker, settings pointing at it, the shipped sample."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vigil.broker import EmbeddedBroker, free_port
from vigil.sample import sample_path
from vigil.settings import VigilSettings
from vigil.stream.features import FeatureSpec
from vigil.stream.windows import WindowSpec


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One tansu broker for the whole session; tests isolate themselves by topic names."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(free_port(), log_path=log) as b:
        yield b


@pytest.fixture
def broker_settings(broker: EmbeddedBroker, tmp_path: Path) -> VigilSettings:
    """Settings with topic names and app id unique to one test, on the session broker."""
    tag = uuid.uuid4().hex[:8]
    return VigilSettings(
        embedded_broker_port=broker.port,
        app_id=f"vigil-{tag}",
        topic_vitals=f"t{tag}.vitals",
        topic_scores=f"t{tag}.scores",
        topic_alerts=f"t{tag}.alerts",
        topic_labels=f"t{tag}.labels",
        topic_dlq=f"t{tag}.dlq",
        topic_acks=f"t{tag}.acks",
        partitions=3,
        data_dir=str(tmp_path / "state"),
        web_port=free_port(),
        # The pipeline tests pin the published rules (qSOFA, NEWS2), whose alerts on the
        # fixture patients are known; the trained models' paths have their own tests
        # (test_model_path, test_deterioration_path).
        sepsis_scorer="qsofa",
        deterioration_scorer="news2",
    )


@pytest.fixture(scope="session")
def windows() -> WindowSpec:
    return WindowSpec((3_600_000, 21_600_000), 7_200_000)


@pytest.fixture(scope="session")
def features(windows: WindowSpec) -> FeatureSpec:
    return FeatureSpec(windows)


@pytest.fixture(scope="session")
def sample_2019() -> Path:
    return sample_path("physionet2019")


@pytest.fixture(scope="session")
def sample_2012() -> Path:
    return sample_path("physionet2012")
