"""The alert lifecycle over event-time sequences: every rule, as a nurse would see it."""

from __future__ import annotations

import pytest

from vigil.alerts.lifecycle import Rules, acknowledge, alert_id, step
from vigil.alerts.policy import Policy
from vigil.wire.state import AlertTrack

H = 3_600_000
M = 60_000
NEVER = 10**15  # no unacknowledged escalation in tests about other rules
RULES = Rules(clear_after_ms=2 * H, refractory_ms=4 * H, escalate_after_ms=NEVER)
SEPSIS = Policy("sepsis", ((0.5, "medium"), (0.8, "high")), clear_ratio=0.8)  # clears < 0.4


def states(out: list) -> list[str | None]:
    return [getattr(t, "state", None) for t in out]


def run(severities: list[str | None], rules: Rules = RULES, step_ms: int = H,
        track: AlertTrack | None = None) -> tuple[list, AlertTrack]:
    """Rows with a severity or none; a row without one is below the clear level."""
    t = track or AlertTrack()
    return states([step(t, s, s is None, i * step_ms, rules) for i, s in enumerate(severities)]), t


def run_risks(risks: list[float], policy: Policy = SEPSIS, rules: Rules = RULES,
              step_ms: int = H) -> tuple[list, AlertTrack]:
    t = AlertTrack()
    out = [step(t, policy.severity(r), policy.below_clear(r), i * step_ms, rules, r)
           for i, r in enumerate(risks)]
    return states(out), t


def test_oscillating_risk_gives_one_alert_not_many() -> None:
    # crosses the raise level 0.5 five times, never below the clear level 0.4 for 2 h
    out, t = run_risks([0.55, 0.45, 0.6, 0.35, 0.52, 0.3, 0.45, 0.51, 0.2, 0.55])
    assert out.count("raised") == 1 and "resolved" not in out
    assert t.episodes == 1 and t.active


def test_hysteresis_risk_between_clear_and_raise_level_keeps_the_alert() -> None:
    out, t = run_risks([0.6] + [0.45] * 10)  # below raise (0.5), above clear (0.4): 10 h
    assert out == ["raised"] + [None] * 10 and t.active


def test_resolves_only_after_staying_below_the_clear_level_for_the_clear_time() -> None:
    out, t = run_risks([0.6, 0.3, 0.3, 0.3])
    assert out == ["raised", None, None, "resolved"] and not t.active
    out, _ = run_risks([0.6, 0.3, 0.45, 0.3, 0.3])  # the clock restarts above the clear level
    assert out == ["raised", None, None, None, None]


def test_refractory_period_suppresses_a_repeat_at_the_same_severity() -> None:
    # resolved at hour 3; back above the raise level at hour 4 (inside 4 h of refractory)
    out, t = run(["medium", None, None, None, "medium", None, None, None, None, None])
    assert out[:5] == ["raised", None, None, "resolved", "suppressed"]
    assert t.episodes == 1


def test_refractory_period_lets_a_higher_severity_through() -> None:
    out, t = run(["medium", None, None, None, "high"])
    assert out == ["raised", None, None, "resolved", "raised"] and t.episodes == 2


def test_a_crossing_after_the_refractory_period_is_a_new_alert() -> None:
    t = AlertTrack()
    ids = []
    for i, s in enumerate(["high", None, None, None, None, None, None, None, "high"]):
        tr = step(t, s, s is None, i * H, RULES)
        if tr is not None and tr.state == "raised":
            ids.append(alert_id("p", "sepsis", t.episode_start_ms))
    assert len(ids) == 2 and ids[0] != ids[1] and t.episodes == 2


def test_severity_escalation_fires_once_per_step_up_and_never_down() -> None:
    out, t = run_risks([0.6, 0.9, 0.95, 0.6, 0.9])
    assert out == ["raised", "escalated", None, None, None]
    assert t.severity == "high" and t.peak == "high"


def test_unacknowledged_alert_escalates_once() -> None:
    rules = Rules(clear_after_ms=2 * H, refractory_ms=4 * H, escalate_after_ms=30 * M)
    out, t = run(["medium"] * 8, rules, step_ms=10 * M)  # 70 min unacknowledged
    assert out == ["raised", None, None, "escalated", None, None, None, None]
    assert t.severity == "high" and t.unacked_escalated


def test_an_unacknowledged_alert_that_is_clearing_does_not_escalate() -> None:
    rules = Rules(clear_after_ms=2 * H, refractory_ms=4 * H, escalate_after_ms=30 * M)
    out, t = run(["medium", None, None, None, None], rules, step_ms=20 * M)
    assert out == ["raised", None, None, None, None] and not t.unacked_escalated


def test_acknowledgement_stops_the_escalation() -> None:
    rules = Rules(clear_after_ms=2 * H, refractory_ms=4 * H, escalate_after_ms=30 * M)
    t = AlertTrack()
    assert step(t, "medium", False, 0, rules).state == "raised"
    aid = alert_id("p", "sepsis", t.episode_start_ms)
    assert acknowledge(t, aid, aid, 20 * M, "RN 4") == "acknowledged"
    out = states([step(t, "medium", False, i * 10 * M, rules) for i in range(1, 12)])
    assert out == [None] * 11 and t.severity == "medium"


def test_a_severity_escalation_needs_a_fresh_acknowledgement() -> None:
    rules = Rules(clear_after_ms=2 * H, refractory_ms=4 * H, escalate_after_ms=30 * M)
    t = AlertTrack()
    step(t, "medium", False, 0, rules)
    aid = alert_id("p", "sepsis", 0)
    acknowledge(t, aid, aid, 5 * M, "RN 4")
    assert step(t, "high", False, 10 * M, rules).state == "escalated"
    assert t.acked_ms < 0  # the ack was for the medium alert
    assert step(t, "high", False, 30 * M, rules) is None
    tr = step(t, "high", False, 40 * M, rules)  # 30 min after the step up, still unacked
    assert tr is not None and (tr.state, tr.cause) == ("escalated", "unacknowledged")


def test_acks_of_other_episodes_or_resolved_alerts_do_not_apply() -> None:
    t = AlertTrack()
    step(t, "medium", False, 0, RULES)
    current = alert_id("p", "sepsis", 0)
    assert acknowledge(t, current, alert_id("p", "sepsis", 1), M, "RN") == "unknown_alert"
    assert acknowledge(None, None, current, M, "RN") == "unknown_alert"
    for h in range(1, 4):
        step(t, None, True, h * H, RULES)
    assert not t.active and acknowledge(t, current, current, 5 * H, "RN") == "not_active"


def test_late_rows_do_not_move_the_lifecycle() -> None:
    t = AlertTrack()
    assert step(t, "high", False, 5 * H, RULES).state == "raised"
    assert step(t, None, True, 4 * H, RULES) is None
    assert t.active and t.last_ms == 5 * H


def test_replaying_the_same_stream_gives_the_same_alert_ids() -> None:
    risks = [0.1, 0.6, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.9, 0.2, 0.2, 0.2]

    def ids() -> list[str]:
        t, found = AlertTrack(), []
        for i, r in enumerate(risks):
            tr = step(t, SEPSIS.severity(r), SEPSIS.below_clear(r), i * H, RULES, r)
            if tr is not None and tr.state != "suppressed":
                found.append(alert_id("p", "sepsis", t.episode_start_ms) + tr.state)
        return found

    first = ids()
    assert first == ids() and len(first) == 4  # raised, resolved, raised, resolved


def test_trend_keeps_the_recent_risks_for_the_sparkline() -> None:
    _, t = run_risks([i / 100 for i in range(20)])
    assert t.trend == [i / 100 for i in range(8, 20)]


def test_alert_ids_are_deterministic_and_distinct() -> None:
    assert alert_id("p", "sepsis", 0) == alert_id("p", "sepsis", 0)
    assert alert_id("p", "sepsis", 0) != alert_id("p", "deterioration", 0)
    assert alert_id("p", "sepsis", 0) != alert_id("q", "sepsis", 0)


def test_policy_levels_red_flag_floor_and_clear_level() -> None:
    p = Policy("deterioration", ((0.35, "high"),), "news2_red")
    assert p.severity(0.30) is None
    assert p.severity(0.30, flag=1.0) == "medium"
    assert p.severity(0.35, flag=1.0) == "high"
    assert p.severity(float("nan")) is None
    assert p.threshold_for("high") == 0.35 and p.raise_threshold == 0.35
    assert p.below_clear(0.27) and not p.below_clear(0.29)  # 0.8 x 0.35 = 0.28
    assert not p.below_clear(0.1, flag=1.0)  # a red parameter keeps the alert


@pytest.mark.parametrize("levels", [(), ((0.5, "high"), (0.4, "medium")), ((0.5, "urgent"),)])
def test_bad_policies_raise(levels) -> None:
    with pytest.raises(ValueError):
        Policy("sepsis", levels)


def test_a_track_stored_before_acknowledgements_existed_keeps_its_clock() -> None:
    import msgspec

    from vigil.wire.state import decode_state

    old = msgspec.msgpack.encode({"alerts": {"sepsis": [True, 0, "medium", -1, 0, 1]}})
    t = decode_state(old).alerts["sepsis"]
    rules = Rules(clear_after_ms=2 * H, refractory_ms=4 * H, escalate_after_ms=30 * M)
    assert step(t, "medium", False, 10 * M, rules) is None  # not "unacknowledged since 1970"
    assert step(t, "medium", False, 30 * M, rules).cause == "unacknowledged"
