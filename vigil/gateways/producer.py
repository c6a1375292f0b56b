"""The gateways' Kafka producer: acks=all, and a bounded wait for the acknowledgement.

A gateway may answer AA (HTTP 201) only for what the broker holds, so every send is awaited
until the broker has acknowledged it with ``acks=all`` (all in-sync replicas). A broker that
is down or slow must not hang a monitor gateway that waits for its ACK either: after
``VIGIL_GATEWAY_ACK_TIMEOUT_S`` the caller gets :class:`Unavailable` and answers an error the
sender retries on. A record whose acknowledgement came too late may still be stored; the
resend then carries the same ``event_id`` and the worker's duplicate rule drops it.

Not idempotent: tansu cannot give aiokafka a producer id (InitProducerId fails), and the
duplicate rule makes idempotence unnecessary for correctness.
"""

from __future__ import annotations

import asyncio
import logging
import time

from vigil.kafka_config import aiokafka_options
from vigil.settings import VigilSettings

__all__ = ["GatewayProducer", "Unavailable"]

log = logging.getLogger(__name__)

RETRY_START_S = 1.0  # after a failed connect, fail fast for this long instead of waiting again


class Unavailable(RuntimeError):
    """The broker did not acknowledge in time (down, unreachable, topic missing, slow)."""


class GatewayProducer:
    """One aiokafka producer per listener, (re)connected lazily."""

    def __init__(self, settings: VigilSettings, *, client_id: str = "vigil-gateway",
                 bootstrap_servers: str | None = None) -> None:
        self.bootstrap = bootstrap_servers or settings.bootstrap_servers
        self.security = aiokafka_options(settings)  # TLS / SASL, as every Vigil client
        self.timeout_s = settings.gateway_ack_timeout_s
        self.max_request_bytes = max(1 << 20, 2 * settings.gateway_max_message_bytes)
        self.client_id = client_id
        self._producer: object | None = None
        self._lock = asyncio.Lock()
        self._down_until = 0.0
        self._last_error = ""

    async def start(self) -> None:
        """Connect now if the broker is there; a listener starts (and answers) without it."""
        try:
            await asyncio.wait_for(self._ensure(), self.timeout_s)
        except (Unavailable, TimeoutError):
            log.warning("Kafka at %s is not reachable yet: messages are answered with AR "
                        "(resend) until it is", self.bootstrap)

    async def _ensure(self):  # type: ignore[no-untyped-def]
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is not None:
                return self._producer
            if time.monotonic() < self._down_until:
                raise Unavailable(self._last_error or "broker unreachable")
            from aiokafka import AIOKafkaProducer

            ms = int(self.timeout_s * 1000)
            p = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=0,
                                 enable_idempotence=False, client_id=self.client_id,
                                 request_timeout_ms=max(1000, ms), retry_backoff_ms=100,
                                 max_request_size=self.max_request_bytes, **self.security)
            try:
                await p.start()
            except BaseException as exc:
                self._down_until = time.monotonic() + RETRY_START_S
                self._last_error = f"cannot connect to Kafka at {self.bootstrap} " \
                                   f"({type(exc).__name__})"
                try:
                    await p.stop()
                except Exception:  # noqa: BLE001 - already failing; the first error matters
                    pass
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise Unavailable(self._last_error) from None
            self._producer = p
            log.info("gateway producer connected to %s", self.bootstrap)
            return p

    async def send(self, items: list[tuple[str, bytes | None, bytes]]) -> None:
        """Produce ``(topic, key, value)`` items; return once the broker acknowledged all.

        Raises :class:`Unavailable` after at most the ACK timeout.
        """
        if not items:
            return
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s):
                p = await self._ensure()
                futures = [await p.send(topic, value=value, key=key)  # type: ignore[attr-defined]
                           for topic, key, value in items]
                await asyncio.gather(*futures)
        except TimeoutError:
            raise Unavailable(f"Kafka did not acknowledge within {self.timeout_s:g} s") from None
        except Unavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - every Kafka error means "not stored"
            raise Unavailable(f"Kafka refused the records ({type(exc).__name__})") from None
        finally:
            waited = time.monotonic() - started
            if waited > self.timeout_s / 2:
                log.warning("broker acknowledgement took %.1f s", waited)

    async def stop(self) -> None:
        p, self._producer = self._producer, None
        if p is not None:
            try:
                await asyncio.wait_for(p.stop(), self.timeout_s)  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - closing; pending sends are the resend's job
                log.warning("gateway producer did not close cleanly")
