"""MLLP framing and the listener against awkward and hostile senders (in-memory producer)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from tests.gateways.fakes import FakeProducer
from vigil.gateways.hl7_service import Hl7Service
from vigil.gateways.metrics import GatewayMetrics
from vigil.gateways.mllp import CR, FS, VT, Frame, Framer, MllpServer, Refusal, frame
from vigil.gateways.samples import PCT, SPO2, obx, oru
from vigil.settings import VigilSettings


def test_framer_split_across_reads_and_several_per_read() -> None:
    f = Framer(1 << 20)
    data = frame(b"MSH|one") + b"\r\n" + frame(b"MSH|two") + frame(b"MSH|three")
    events = []
    for i in range(len(data)):  # one byte per read: the worst split
        events += f.feed(data[i:i + 1])
    assert [e.payload for e in events if isinstance(e, Frame)] == [b"MSH|one", b"MSH|two",
                                                                   b"MSH|three"]
    assert [e.payload for e in Framer(100).feed(data)] == [b"MSH|one", b"MSH|two", b"MSH|three"]


def test_framer_limits() -> None:
    [big] = Framer(1024).feed(VT + b"MSH|" + b"x" * 5000)
    assert isinstance(big, Refusal) and big.reason == "too_large" and len(big.prefix) <= 4096
    [junk] = Framer(1024).feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4)
    assert isinstance(junk, Refusal) and junk.reason == "not_mllp"
    assert Framer(1024).feed(b"\r\n  \r\n") == []


class _Listener:
    def __init__(self, **kw: object) -> None:
        self.settings = VigilSettings(pseudonym_key="k", **kw)  # type: ignore[arg-type]
        self.producer = FakeProducer()
        self.metrics = GatewayMetrics()
        self.service = Hl7Service(self.settings, self.producer, self.metrics)  # type: ignore[arg-type]
        s = self.settings
        self.server = MllpServer(self.service.handle, self.service.refuse, host="127.0.0.1",
                                 port=0, max_bytes=s.gateway_max_message_bytes,
                                 idle_timeout_s=s.gateway_idle_timeout_s,
                                 read_timeout_s=s.gateway_read_timeout_s,
                                 max_connections=s.gateway_max_connections, metrics=self.metrics)


async def _read_acks(reader: asyncio.StreamReader, n: int, timeout: float = 10) -> list[bytes]:
    acks: list[bytes] = []
    buf = b""
    deadline = time.monotonic() + timeout
    while len(acks) < n:
        chunk = await asyncio.wait_for(reader.read(65536), max(0.01, deadline - time.monotonic()))
        if not chunk:
            break
        buf += chunk
        while FS + CR in buf:
            end = buf.index(FS + CR)
            acks.append(buf[buf.index(VT) + 1:end])
            buf = buf[end + 2:]
    return acks


def _msa(ack: bytes) -> str:
    return next(s for s in ack.split(b"\r") if s.startswith(b"MSA")).split(b"|")[1].decode()


def test_split_writes_and_several_messages_on_one_connection() -> None:
    async def main() -> None:
        lst = _Listener()
        await lst.server.start()
        try:
            r, w = await asyncio.open_connection("127.0.0.1", lst.server.port)
            data = frame(oru("C1")) + frame(oru("C2", hr="900")) + frame(oru("C3"))
            for i in range(0, len(data), 37):  # TCP segments cut anywhere, even in FS CR
                w.write(data[i:i + 37])
                await w.drain()
            acks = await _read_acks(r, 3)
            assert [_msa(a) for a in acks] == ["AA", "AE", "AA"]
            assert [a.split(b"MSA|")[1].split(b"|")[1].split(b"\r")[0] for a in acks] == [
                b"C1", b"C2", b"C3"]
            w.close()
        finally:
            await lst.server.stop()
        assert len(lst.producer.topic(lst.settings.topic_vitals)) == 3
    asyncio.run(main())


def test_hostile_senders_get_an_error_and_do_not_stall_others() -> None:
    async def main() -> None:
        lst = _Listener(gateway_max_message_bytes=4096, gateway_read_timeout_s=0.5,
                        gateway_max_connections=3)
        await lst.server.start()
        port = lst.server.port
        try:
            # a slow sender: a frame started and never finished
            slow_r, slow_w = await asyncio.open_connection("127.0.0.1", port)
            slow_w.write(VT + b"MSH|^~\\&|A|B")
            await slow_w.drain()
            # a huge one
            big_r, big_w = await asyncio.open_connection("127.0.0.1", port)
            big_w.write(frame(oru("BIG") + b"x" * 10_000))
            await big_w.drain()
            [big_ack] = await _read_acks(big_r, 1)
            assert _msa(big_ack) == "AR" and b"larger than 4096" in big_ack
            assert await big_r.read() == b""  # then disconnected
            # a good sender is served meanwhile
            ok_r, ok_w = await asyncio.open_connection("127.0.0.1", port)
            ok_w.write(frame(oru("OK1")))
            assert _msa((await _read_acks(ok_r, 1))[0]) == "AA"
            # the slow one is told and cut off by the read timeout
            [slow_ack] = await _read_acks(slow_r, 1)
            assert _msa(slow_ack) == "AR" and b"not complete within" in slow_ack
            # binary junk
            j_r, j_w = await asyncio.open_connection("127.0.0.1", port)
            j_w.write(bytes(range(256)) * 2)
            assert _msa((await _read_acks(j_r, 1))[0]) == "AR"
            ok_w.close()
        finally:
            await lst.server.stop()
    asyncio.run(main())


def test_connection_cap() -> None:
    async def main() -> None:
        lst = _Listener(gateway_max_connections=1)
        await lst.server.start()
        try:
            r1, w1 = await asyncio.open_connection("127.0.0.1", lst.server.port)
            w1.write(frame(oru("A1")))
            assert _msa((await _read_acks(r1, 1))[0]) == "AA"
            r2, w2 = await asyncio.open_connection("127.0.0.1", lst.server.port)
            [ack] = await _read_acks(r2, 1)
            assert _msa(ack) == "AR" and b"open connections" in ack
            w1.write(frame(oru("A2")))  # the first connection goes on
            assert _msa((await _read_acks(r1, 1))[0]) == "AA"
        finally:
            await lst.server.stop()
    asyncio.run(main())


def test_blocking_client_sees_ack_for_every_message() -> None:
    from vigil.gateways.runner import Hl7Listener
    from vigil.gateways.sender import MllpClient, ack_code

    s = VigilSettings(kafka_url="127.0.0.1:1", gateway_ack_timeout_s=0.5, pseudonym_key="k")
    with Hl7Listener(s) as listener:
        c = MllpClient("127.0.0.1", listener.port, timeout_s=10)
        assert ack_code(c.exchange(oru("D1"))) == "AR"  # broker down: never AA, never hangs
        c.close()
    with socket.socket() as probe:  # the port is released
        assert probe.connect_ex(("127.0.0.1", listener.port)) != 0


def test_a_big_message_is_parsed_off_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """While a large message is still being parsed, another connection is answered.

    The big message's parse is held until the small one's ACK has arrived: were it parsed on
    the event loop, the loop (and the small ACK) would wait for it, and the big parse would
    have finished first.
    """
    from vigil.gateways import hl7_service

    real = hl7_service.parse
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def gated(raw: bytes, door: object, zone: object, now: object = None) -> object:
        if len(raw) > hl7_service.INLINE_PARSE_BYTES:
            started.set()
            release.wait(10)  # a safety net against a hang, not a measurement
            try:
                return real(raw, door, zone)  # type: ignore[arg-type]
            finally:
                finished.set()
        return real(raw, door, zone)  # type: ignore[arg-type]

    monkeypatch.setattr(hl7_service, "parse", gated)
    big = oru("BIG", extra=[obx(100 + i, SPO2, str(90 + i % 10), PCT) for i in range(80)])
    assert len(big) > hl7_service.INLINE_PARSE_BYTES

    async def main() -> None:
        lst = _Listener()
        await lst.server.start()
        try:
            big_r, big_w = await asyncio.open_connection("127.0.0.1", lst.server.port)
            big_w.write(frame(big))
            await big_w.drain()
            assert await asyncio.to_thread(started.wait, 10)
            r, w = await asyncio.open_connection("127.0.0.1", lst.server.port)
            w.write(frame(oru("SMALL")))
            assert _msa((await _read_acks(r, 1))[0]) == "AA"
            assert not finished.is_set()  # answered while the big parse was held
            release.set()
            assert _msa((await _read_acks(big_r, 1))[0]) == "AA"
            w.close()
            big_w.close()
        finally:
            release.set()
            await lst.server.stop()
            lst.service.close()
    asyncio.run(main())
