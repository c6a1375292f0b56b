"""The alert lifecycle over event-time sequences."""

from __future__ import annotations

import pytest

from vigil.alerts.lifecycle import alert_id, step
from vigil.alerts.policy import Policy
from vigil.stream.state import AlertTrack

H = 3_600_000
CLEAR = 2 * H


def run(severities: list[str | None], clear_after: int = CLEAR) -> tuple[list, AlertTrack]:
    t = AlertTrack()
    return [step(t, s, i * H, clear_after) for i, s in enumerate(severities)], t


def test_oscillating_risk_gives_one_alert_not_many() -> None:
    out, t = run(["medium", None, "medium", None, "medium", None, "medium"])
    assert out.count("raised") == 1 and "resolved" not in out
    assert t.episodes == 1


def test_resolves_only_after_staying_below_for_the_clear_time() -> None:
    out, t = run(["medium", None, None, None])
    assert out == ["raised", None, None, "resolved"] and not t.active


def test_a_new_episode_after_resolution_is_a_new_alert() -> None:
    t = AlertTrack()
    ids = []
    for i, s in enumerate(["high", None, None, None, "high"]):
        if step(t, s, i * H, CLEAR) == "raised":
            ids.append(alert_id("p", "sepsis", t.episode_start_ms))
    assert len(ids) == 2 and ids[0] != ids[1] and t.episodes == 2


def test_escalation_fires_once_per_step_up_and_never_down() -> None:
    out, t = run(["medium", "high", "high", "medium", "high"])
    assert out == ["raised", "escalated", None, None, None]
    assert t.severity == "high"


def test_late_rows_do_not_move_the_lifecycle() -> None:
    t = AlertTrack()
    assert step(t, "high", 5 * H, CLEAR) == "raised"
    assert step(t, None, 4 * H, CLEAR) is None
    assert t.active and t.last_ms == 5 * H


def test_alert_ids_are_deterministic() -> None:
    a = run(["medium", "high"])[1]
    b = run(["medium", "high"])[1]
    assert alert_id("p", "sepsis", a.episode_start_ms) == alert_id("p", "sepsis", b.episode_start_ms)
    assert alert_id("p", "sepsis", 0) != alert_id("p", "deterioration", 0)
    assert alert_id("p", "sepsis", 0) != alert_id("q", "sepsis", 0)


def test_policy_levels_and_red_flag_floor() -> None:
    p = Policy("deterioration", ((0.35, "high"),), "news2_red")
    assert p.severity(0.30) is None
    assert p.severity(0.30, flag=1.0) == "medium"
    assert p.severity(0.35, flag=1.0) == "high"
    assert p.severity(float("nan")) is None
    assert p.threshold_for("high") == 0.35 and p.raise_threshold == 0.35


@pytest.mark.parametrize("levels", [(), ((0.5, "high"), (0.4, "medium")), ((0.5, "urgent"),)])
def test_bad_policies_raise(levels) -> None:
    with pytest.raises(ValueError):
        Policy("sepsis", levels)
