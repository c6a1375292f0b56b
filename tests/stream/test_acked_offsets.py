"""faust's commit after a gap it also acknowledged (stream/transport.py, issue 13).

faust's own ``Consumer._new_offset`` is run on the state it keeps per partition: offsets
0-9 registered as a gap (as Vigil registers the records it fetched itself) and 5-11
acknowledged by faust (its own later copies of some of them, and the next records). All of
0-11 are done, so one commit may move to 12.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from types import SimpleNamespace

import pytest
from faust.transport.consumer import Consumer
from faust.types import TP

from vigil.settings import VigilSettings
from vigil.stream.app import build_app
from vigil.stream.transport import AckedOffsets

TP0 = TP("t.vitals", 0)


def _consumer_state(acked_type: type) -> SimpleNamespace:
    from intervaltree import IntervalTree

    state = SimpleNamespace(_acked=defaultdict(acked_type), _gap=defaultdict(IntervalTree),
                            _acked_index=defaultdict(set),
                            _committed_offset=defaultdict(lambda: None))
    state._gap[TP0].addi(0, 10)  # what Consumer._add_gap(tp, 0, 9) stores
    for offset in range(5, 12):
        state._acked[TP0].append(offset)
        state._acked_index[TP0].add(offset)
    return state


def _commits(state: SimpleNamespace, rounds: int = 20) -> list[int]:
    """The offsets faust would commit, one call per commit interval, until done."""
    out: list[int] = []
    for _ in range(rounds):
        new = Consumer._new_offset(state, TP0)  # type: ignore[arg-type]
        if new is None or not state._acked[TP0]:
            if new is not None:
                out.append(new)
            break
        out.append(new)
        state._committed_offset[TP0] = new
    return out


def test_faust_alone_crawls_past_offsets_it_holds_twice() -> None:
    """Why: with a plain list, the duplicates 5-9 end each run, and the commit moves one
    offset or two per interval (2.8 s by default) instead of to the end at once."""
    commits = _commits(_consumer_state(list))
    assert commits[0] < 12 and len(commits) > 2, commits


def test_one_commit_reaches_the_end_when_duplicates_are_dropped() -> None:
    assert _commits(_consumer_state(AckedOffsets)) == [12]


def test_the_worker_consumer_keeps_its_acked_offsets_that_way() -> None:
    app = build_app(VigilSettings(data_dir=tempfile.mkdtemp()))
    acked = app.consumer._acked
    assert isinstance(acked[TP0], AckedOffsets)


@pytest.mark.parametrize("offsets", [[3, 1, 2, 2, 3], [], [7]])
def test_acked_offsets_sort_like_a_list_without_repeats(offsets: list[int]) -> None:
    a = AckedOffsets(offsets)
    a.sort()
    assert a == sorted(set(offsets)) and isinstance(a, AckedOffsets)
