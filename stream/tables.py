"""The patients table: declared once, read through a decode cache, written changelog-first.

One faust table, ``patients``, keyed by patient pseudonym (bytes), values msgpack bytes of
:class:`~vigil.wire.state.PatientState`. Keys starting with ``#`` are Vigil's own
bookkeeping in the same changelog (each vitals partition's progress, label queue and online
models, and the markers of repaired log ends): no pseudonym starts with ``#``.

Vigil writes the changelog itself (:meth:`PatientStore.store`), durable before the table and
before the batch is acked; a crash in between re-processes the batch, and the deterministic
output ids make that harmless.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import faust

from vigil.settings import VigilSettings
from vigil.stream.publisher import OutputPublisher
from vigil.stream.topics import changelog_topic
from vigil.wire.state import PatientState, decode_state, encode_state

__all__ = ["Changes", "PatientStore", "declare_patients_table"]

#: changed table entries by changelog partition; a ``None`` value removes the key
Changes = dict[int, list[tuple[bytes, bytes | None]]]


def declare_patients_table(app: faust.App, settings: VigilSettings) -> faust.Table:
    table = app.Table("patients", default=None, partitions=settings.partitions,
                      key_type=bytes, value_type=bytes,
                      help="Per-patient windows, dedupe ids and alert lifecycle (msgpack).")
    assert table.changelog_topic_name == changelog_topic(settings), table.changelog_topic_name
    return table


class PatientStore:
    """Patient states and bookkeeping entries of the patients table.

    Decoded states are cached by patient with the exact bytes object they were decoded from
    or encoded to. Decoding was 10% of a worker's CPU in a profile; the identity check makes
    the cache safe without invalidation hooks: table recovery after a rebalance stores new
    bytes objects, which never match a cached entry.

    ``lock``: the vitals, acks and sweep handlers all read-modify-write patient states
    across awaits (publish, changelog); they hold it so none overwrites another's state.
    """

    def __init__(self, table: faust.Table, publisher: OutputPublisher, changelog: str) -> None:
        self.table = table
        self.publisher = publisher
        self.changelog = changelog
        self.lock = asyncio.Lock()
        self._decoded: dict[bytes, tuple[bytes, PatientState]] = {}

    def get(self, key: bytes) -> bytes | None:
        """A raw entry (bookkeeping, online models)."""
        return self.table.data.get(key)

    def state(self, patient: str) -> PatientState | None:
        key = patient.encode()
        raw = self.table.get(key)
        if raw is None:
            return None
        hit = self._decoded.get(key)
        if hit is not None and hit[0] is raw:
            return hit[1]
        state = decode_state(raw)
        self._decoded[key] = (raw, state)
        return state

    def patients(self) -> list[bytes]:
        return [k for k in list(self.table.data.keys()) if not k.startswith(b"#")]

    def encode(self, patient: str, state: PatientState) -> tuple[bytes, bytes]:
        """(key, bytes) of a changed state, cached so the next read needs no decode."""
        key, raw = patient.encode(), encode_state(state)
        self._decoded[key] = (raw, state)
        return key, raw

    def put_local(self, key: bytes, raw: bytes) -> None:
        """Visible to later reads before it is stored (several acks in one batch)."""
        self.table.data[key] = raw

    async def store(self, changes: Changes) -> None:
        """Changed entries, by partition: durable in the changelog first, then in the table."""
        await self.publisher.publish_changelog(self.changelog, changes)
        for recs in changes.values():
            for key, raw in recs:
                if raw is None:
                    self.table.data.pop(key, None)
                    self._decoded.pop(key, None)
                else:
                    self.table.data[key] = raw

    @staticmethod
    def changes() -> Changes:
        return defaultdict(list)
