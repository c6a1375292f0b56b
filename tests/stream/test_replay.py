"""Reading PhysioNet 2019/2012 from folders and archives, and the replay timeline."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from vigil.stream.replay.physionet2012 import parse_record
from vigil.stream.replay.physionet2019 import parse_psv
from vigil.stream.replay.sources import list_files, load_stays
from vigil.stream.replay.timeline import Timeline
from vigil.stream.validation import Accepted, validate
from vigil.wire.records import LABEL_DECODER, VITALS_DECODER

HOUR = 3_600_000
PSV = """HR|O2Sat|Temp|SBP|MAP|DBP|Resp|EtCO2|WBC|Age|Gender|Unit1|Unit2|HospAdmTime|ICULOS|SepsisLabel
NaN|NaN|NaN|NaN|NaN|NaN|NaN|NaN|NaN|70|1|0|1|-5.5|1|0
90|97|NaN|120|80|NaN|18|NaN|13.5|70|1|0|1|-5.5|2|0
110|93|38.6|95|70|55|26|NaN|NaN|70|1|0|1|-5.5|3|1
115|92|NaN|90|68|NaN|28|NaN|NaN|70|1|0|1|-5.5|4|1
"""


def test_psv_rows_become_hourly_measurements_with_labels() -> None:
    stay = parse_psv("p9", PSV)
    assert (stay.unit, stay.sex, stay.age_years, stay.hospital_admit_hours) == ("SICU", "male", 70, -5.5)
    assert [m.hours for m in stay.measurements] == [2, 3, 4]  # hour 1 measured nothing
    first = dict((c, v) for c, v, _, _ in stay.measurements[0].observations)
    assert first == {"HR": 90, "SpO2": 97, "SBP": 120, "MAP": 80, "RR": 18, "WBC": 13.5}
    assert stay.septic
    # onset = first label (hour 3) + 6 = hour 9, capped at the stay's end (hour 4)
    known = {lb.hours: (lb.label, lb.known_hours) for lb in stay.labels}
    assert known == {1: (0, 4), 2: (0, 4), 3: (1, 4), 4: (1, 4)}


def test_psv_label_known_times_follow_the_six_hour_shift() -> None:
    rows = "\n".join(f"80|NaN|NaN|NaN|NaN|NaN|NaN|NaN|NaN|60|0|1|0|0|{h}|{int(h >= 10)}"
                     for h in range(1, 31))
    stay = parse_psv("p", PSV.splitlines()[0] + "\n" + rows)
    known = {lb.hours: lb.known_hours for lb in stay.labels}
    assert known[1] == 7 and known[9] == 15  # a 0 is sure only 6 h later
    assert known[10] == 16 and known[20] == 20  # a 1 once onset (hour 16) has come


def test_2012_record_groups_a_minute_and_keeps_bp_method() -> None:
    text = """Time,Parameter,Value
00:00,RecordID,1
00:00,Age,66
00:00,Gender,0
00:00,ICUType,2
00:00,Weight,-1
00:07,HR,73
00:07,NISysABP,147
00:07,SysABP,150
00:07,Weight,80
01:37,Temp,35.6
"""
    stay = parse_record("1", text, death=1)
    assert (stay.unit, stay.sex, stay.age_years) == ("CSRU", "female", 66)
    assert [round(m.hours, 3) for m in stay.measurements] == [0.117, 1.617]
    obs = stay.measurements[0].observations
    assert ("SBP", 147.0, "mm[Hg]", "non-invasive") in obs and ("SBP", 150.0, "mm[Hg]", "invasive") in obs
    assert stay.unmapped == 1  # weight is not a Vigil code: counted, not sent
    assert [(lb.kind, lb.label, lb.known_hours) for lb in stay.labels] == [("death", 1, 48.0)]


def test_folder_and_archive_give_the_same_stays(sample_2019: Path, tmp_path: Path) -> None:
    archive = tmp_path / "sample.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for f in sorted(sample_2019.glob("*.psv"), reverse=True):  # archive order differs
            tar.add(f, arcname=f"training_setA/{f.name}")
    a = load_stays(sample_2019, 5)
    b = load_stays(archive, 5)
    assert [s.source_id for s in a] == [s.source_id for s in b] == sorted(s.source_id for s in a)
    assert [s.measurements for s in a] == [s.measurements for s in b]
    assert len(list_files(archive)) == len(list(sample_2019.glob("*.psv")))


def test_2012_outcomes_are_attached(sample_2012: Path) -> None:
    stays = load_stays(sample_2012)
    assert len(stays) == 12
    assert sum(lb.label for s in stays for lb in s.labels) == 6


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_stays(tmp_path / "nope")


def test_timeline_is_event_ordered_pseudonymous_and_in_the_past(sample_2019, sample_2012) -> None:
    stays = load_stays(sample_2019, 4) + load_stays(sample_2012, 2)
    now = 1_800_000_000_000
    tl = Timeline(stays, "secret", now_ms=now)
    recs = list(tl)
    assert len(recs) == tl.n_vitals + tl.n_labels
    assert [r.at_ms for r in recs] == sorted(r.at_ms for r in recs)
    assert max(r.at_ms for r in recs) <= now
    ids = {s.source_id for s in stays}
    for r in recs:
        assert not any(i in r.value.decode() for i in ids)  # source ids never leave
        if r.topic == "vitals":
            v = VITALS_DECODER.decode(r.value)
            assert v.patient == r.key and isinstance(validate(r.value, now, 0), Accepted)
        else:
            assert LABEL_DECODER.decode(r.value).known_time.timestamp() * 1000 == r.at_ms
    again = list(Timeline(stays, "secret", now_ms=now))
    assert [r.value for r in again] == [r.value for r in recs]  # deterministic
    other = Timeline(stays, "other key", now_ms=now)
    assert {r.key for r in other} != {r.key for r in recs}


@pytest.mark.parametrize(("age", "sent"), [("83.94", 83.0), ("97", 90.0), ("0.4", 0.0)])
def test_replayed_ages_travel_in_whole_years_capped_at_90(age: str, sent: float) -> None:
    """The topics carry no fraction of a year (with an admission time, a near birthday) and
    no age over 90 (HIPAA Safe Harbor), whatever the source holds."""
    rows = "\n".join(line.replace("|70|", f"|{age}|") for line in PSV.splitlines()[1:])
    stay = parse_psv("p", PSV.splitlines()[0] + "\n" + rows)
    assert stay.age_years == sent
    text = f"Time,Parameter,Value\n00:00,RecordID,1\n00:00,Age,{age}\n00:05,HR,80\n"
    assert parse_record("1", text).age_years == sent
    vitals = [VITALS_DECODER.decode(r.value) for r in Timeline([stay], "k", now_ms=1_800_000_000_000)
              if r.topic == "vitals"]
    assert vitals and {v.patient_info.age_years for v in vitals} == {sent}
