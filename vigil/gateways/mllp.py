"""MLLP (HL7 v2 Minimal Lower Layer Protocol, HL7 v2.6 appendix C / IHE ITI TF-2x appendix C)
framing and the asyncio listener.

A message travels as ``<VT> message <FS><CR>`` (0x0B ... 0x1C 0x0D). TCP delivers bytes, not
messages: a frame may arrive in many reads and one read may hold several frames, so framing
is a small state machine (:class:`Framer`) fed whatever each read returned.

Against hostile or broken senders (README "Limits for hostile senders"):

- a frame larger than ``VIGIL_GATEWAY_MAX_MESSAGE_BYTES`` is answered AR and the connection
  closed; nothing beyond the first bytes (kept for the ACK's header) is buffered;
- bytes outside a frame (not MLLP) are tolerated as whitespace between frames; anything else
  beyond a few bytes gets an AR and a close;
- a frame must be complete within ``VIGIL_GATEWAY_READ_TIMEOUT_S`` of its start block (slow
  senders); a connection idle for ``VIGIL_GATEWAY_IDLE_TIMEOUT_S`` is closed;
- a sender that does not read its ACKs is disconnected after the read timeout;
- at most ``VIGIL_GATEWAY_MAX_CONNECTIONS`` connections; one more is answered AR and closed.

Each connection is its own task: a slow or broken one never stalls the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from vigil.gateways.metrics import GatewayMetrics

__all__ = ["VT", "FS", "CR", "frame", "Framer", "Frame", "Refusal", "MllpServer"]

log = logging.getLogger(__name__)

VT, FS, CR = b"\x0b", b"\x1c", b"\x0d"
PREFIX_KEPT = 4096  # bytes of an oversized frame kept, to read its MSH for the AR
JUNK_LIMIT = 64  # non-whitespace bytes outside frames tolerated before "not MLLP"


def frame(message: bytes) -> bytes:
    return VT + message + FS + CR


@dataclass(frozen=True, slots=True)
class Frame:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Refusal:
    """The connection cannot go on: answer AR (``reason``), then close."""

    reason: str  # too_large / not_mllp
    detail: str
    prefix: bytes


class Framer:
    """Bytes in, frames out; memory bounded by ``max_bytes`` whatever the sender does.

    >>> f = Framer(1024)
    >>> [e.payload for e in f.feed(b"\\x0bMSH|a\\x1c")] + [e.payload for e in f.feed(b"\\r")]
    [b'MSH|a']
    >>> f.in_frame
    False
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.buf = bytearray()
        self.in_frame = False
        self.junk = 0
        self.started_at = 0.0

    @property
    def pending(self) -> bool:
        """Part of a frame, or junk, received without an end: the sender is owed an answer."""
        return self.in_frame or self.junk > 0

    def feed(self, data: bytes) -> list[Frame | Refusal]:
        out: list[Frame | Refusal] = []
        i, n = 0, len(data)
        while i < n:
            if not self.in_frame:
                j = data.find(VT, i)
                outside = data[i:] if j < 0 else data[i:j]
                self.junk += len(outside.translate(None, b" \t\r\n\x00"))
                if self.junk > JUNK_LIMIT:
                    out.append(Refusal("not_mllp", "bytes outside an MLLP frame (<VT> message "
                                       "<FS><CR>): is the sender speaking MLLP?",
                                       bytes(outside[:PREFIX_KEPT])))
                    return out
                if j < 0:
                    return out
                self.in_frame, self.junk = True, 0
                self.started_at = time.monotonic()
                self.buf.clear()
                i = j + 1
                continue
            k = data.find(FS, i)
            chunk = data[i:] if k < 0 else data[i:k]
            if len(self.buf) + len(chunk) > self.max_bytes:
                self.buf.extend(chunk[:max(0, PREFIX_KEPT - len(self.buf))])
                out.append(Refusal("too_large", f"message larger than {self.max_bytes} bytes "
                                   "(VIGIL_GATEWAY_MAX_MESSAGE_BYTES)", bytes(self.buf[:PREFIX_KEPT])))
                self.buf.clear()
                return out
            self.buf.extend(chunk)
            if k < 0:
                return out
            out.append(Frame(bytes(self.buf)))
            self.buf.clear()
            self.in_frame = False
            i = k + 1
            if i < n and data[i:i + 1] == CR:
                i += 1
        return out


Handler = Callable[[bytes, int], Awaitable[bytes]]
Refuser = Callable[[bytes, str, str, int], Awaitable[bytes]]


class MllpServer:
    """The asyncio MLLP listener: one task per connection, messages answered in order."""

    def __init__(self, handle: Handler, refuse: Refuser, *, host: str, port: int,
                 max_bytes: int, idle_timeout_s: float, read_timeout_s: float,
                 max_connections: int, metrics: GatewayMetrics) -> None:
        self.handle = handle
        self.refuse = refuse
        self.host, self.port = host, port
        self.max_bytes = max_bytes
        self.idle_timeout_s = idle_timeout_s
        self.read_timeout_s = read_timeout_s
        self.max_connections = max_connections
        self.metrics = metrics
        self.server: asyncio.base_events.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.open = 0

    async def start(self) -> MllpServer:
        self.server = await asyncio.start_server(self._accept, self.host, self.port,
                                                 limit=1 << 16)
        sock = self.server.sockets[0].getsockname()
        self.port = sock[1]
        log.info("MLLP listener on %s:%d", self.host, self.port)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for t in list(self.tasks):
            t.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        gauge = self.metrics.connections.labels("hl7")
        try:
            if self.open >= self.max_connections:
                self.metrics.connections_closed.labels("limit").inc()
                ack = await self.refuse(b"", "too_many_connections",
                                        f"more than {self.max_connections} open connections "
                                        "(VIGIL_GATEWAY_MAX_CONNECTIONS): retry later", -1)
                await self._write(writer, ack)
                return
            self.open += 1
            gauge.inc()
            try:
                await self._serve(reader, writer)
            finally:
                self.open -= 1
                gauge.dec()
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001 - one connection's failure stays there
            log.warning("MLLP connection ended by %s", type(exc).__name__)
        finally:
            self.tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _write(self, writer: asyncio.StreamWriter, ack: bytes) -> bool:
        writer.write(frame(ack))
        try:
            await asyncio.wait_for(writer.drain(), self.read_timeout_s)
            return True
        except (TimeoutError, ConnectionError):
            self.metrics.connections_closed.labels("slow_reader").inc()
            return False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = Framer(self.max_bytes)
        seq = 0
        while True:
            if framer.in_frame:
                timeout = self.read_timeout_s - (time.monotonic() - framer.started_at)
            else:
                timeout = self.idle_timeout_s
            try:
                data = await asyncio.wait_for(reader.read(1 << 16), max(0.0, timeout))
            except TimeoutError:
                if framer.pending:
                    self.metrics.connections_closed.labels("read_timeout").inc()
                    ack = await self.refuse(bytes(framer.buf[:4096]), "read_timeout",
                                            f"message not complete within "
                                            f"{self.read_timeout_s:g} s "
                                            "(VIGIL_GATEWAY_READ_TIMEOUT_S)", seq)
                    await self._write(writer, ack)
                else:
                    self.metrics.connections_closed.labels("idle_timeout").inc()
                return
            except ConnectionError:
                return
            if not data:  # the sender closed its side
                if framer.pending:
                    ack = await self.refuse(bytes(framer.buf[:4096]), "incomplete",
                                            "connection closed inside a message (no <FS><CR>)",
                                            seq)
                    await self._write(writer, ack)
                return
            for event in framer.feed(data):
                if isinstance(event, Refusal):
                    self.metrics.connections_closed.labels(event.reason).inc()
                    ack = await self.refuse(event.prefix, event.reason, event.detail, seq)
                    await self._write(writer, ack)
                    return
                seq += 1
                ack = await self.handle(event.payload, seq)
                if not await self._write(writer, ack):
                    return
