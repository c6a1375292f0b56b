"""An in-memory stand-in for the gateways' producer, for tests that need no broker.

The messages themselves come from :mod:`vigil.gateways.samples`, shared with the benchmark.
"""

from __future__ import annotations

from vigil.gateways.producer import Unavailable


class FakeProducer:
    """Stands in for GatewayProducer where no broker is needed: keeps what was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.down = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, items: list[tuple[str, bytes | None, bytes]]) -> None:
        if self.down:
            raise Unavailable("test broker is down")
        self.sent.extend(items)

    def topic(self, name: str) -> list[bytes]:
        return [v for t, _, v in self.sent if t == name]
