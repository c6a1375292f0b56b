"""Every alert of a replay of the shipped sample explains itself in a nurse's words.

The deployed scorers (the hybrid stacks of both kinds) run over every
shipped patient through the worker's own processor; each driver of each alert must name a
measurement with a value, a trend or how long it has not been measured, and never carry a
feature identifier such as ``DBP_hours_since``.
"""

from __future__ import annotations

import re

from vigil.sample import sample_path
from vigil.settings import VigilSettings
from vigil.stream.offline import run_offline
from vigil.stream.processor import build_processor
from vigil.stream.replay.sources import load_stays
from vigil.stream.replay.timeline import Timeline
from vigil.wire.codes import CODES

NOW = 1_780_000_000_000
PATIENT_FACTS = re.compile(r"^(age \d+|male|female|\d+ h since (ICU|hospital) admission|"
                           r"shock index (\d|unknown \(no HR or SBP\)))")


def test_every_driver_of_a_replay_reads_as_a_measurement_never_a_feature_name() -> None:
    proc = build_processor(VigilSettings())
    stays = load_stays(sample_path(), None)
    tl = Timeline(stays, "k", now_ms=NOW)
    res, _ = run_offline(proc, [(r.key, r.value) for r in tl if r.topic == "vitals"],
                         now_ms=NOW)
    alerts = [a for _, a in res.alerts if a.state in ("raised", "escalated")]
    assert len(alerts) > 50 and {a.kind for a in alerts} == {"sepsis", "deterioration"}
    names = set(proc.features.names)
    # a feature named as the clinical term itself ("shock index") reads fine unspaced
    spaced = {n.replace("_", " ") for n in names} - {"shock index"}
    labels = {spec.label for spec in CODES.values()} | {"BP"}
    seen = 0
    for a in alerts:
        assert a.reasons, a.summary
        for d in a.reasons:
            seen += 1
            # no feature identifier, nor one with its underscores made spaces
            assert not any(n in d.text for n in names), d.text
            assert not any(n in d.text for n in spaced), d.text
            assert "_" not in d.text, d.text
            if PATIENT_FACTS.match(d.text):  # age, sex, time since admission
                continue
            assert any(d.text.startswith((f"{lb} ", f"no {lb} ")) for lb in labels), d.text
            # a value, a trend, or how long it has not been measured
            assert re.search(r"\d", d.text) or d.text.startswith("no "), d.text
        assert a.summary.startswith(("NEWS2 ", "sepsis risk ", "qSOFA ", "deterioration: ")), \
            a.summary
    assert seen >= len(alerts)
