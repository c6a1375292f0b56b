"""An in-process board for the guard's tests: the real routes and guard, a fake Kafka side.

The feed is marked ready and alerts are put into the state directly; acks go to a list
instead of the acks topic. Passwords use a cheap argon2id so the tests stay fast (the
parameters are not what is under test: the rules are)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from vigil.board.auth import Accounts, hash_password
from vigil.board.guard import Guard
from vigil.board.service import Board
from vigil.board.users_file import UsersFile
from vigil.board.web import build_app
from vigil.settings import VigilSettings
from vigil.wire.records import AckEvent, AlertEvent, Driver

FAST = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
PASSWORD = "correct horse battery"


class FakeSender:
    ready = True

    def __init__(self) -> None:
        self.sent: list[AckEvent] = []

    async def start(self) -> None:
        pass

    async def send(self, ack: AckEvent) -> None:
        self.sent.append(ack)

    async def stop(self) -> None:
        pass


def alert(n: int, unit: str | None, *, state: str = "raised") -> AlertEvent:
    t = datetime.now(UTC) - timedelta(minutes=n)
    return AlertEvent(alert_id=f"a{n}", event_id=f"a{n}:{state}", patient=f"pt-{n:04d}",
                      kind="sepsis", severity="high", state=state, risk=0.4, threshold=0.2,
                      reasons=[Driver("RR", "RR 28 ↑")], summary="qSOFA 2", scorer="qsofa",
                      event_time=t, published_at=t, episode_start=t, record_id=f"r{n}",
                      unit=unit, bed=str(n))


class BoardHarness:
    """The app on a real local port, a client per person, the users file and the fakes."""

    def __init__(self, settings: VigilSettings, users: UsersFile) -> None:
        self.settings = settings
        self.users = users
        self.board = Board(settings)
        self.sender = FakeSender()
        self.board.sender = self.sender  # type: ignore[assignment]

        async def start() -> None:
            self.board.feed.ready = True

        self.board.start = start  # type: ignore[method-assign]
        self.guard = Guard(settings, users=users, accounts=Accounts(users, FAST))
        for a in (alert(1, "MICU"), alert(2, "SICU"), alert(3, None), alert(4, "MICU")):
            self.board.state.apply_alert(a)
        self.server = TestServer(build_app(self.board, self.guard), host="127.0.0.1")
        self.clients: list[TestClient] = []

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def client(self) -> TestClient:
        c = TestClient(self.server)
        await c.start_server()
        self.clients.append(c)
        return c

    async def signed_in(self, name: str, password: str = PASSWORD) -> tuple[TestClient, str]:
        """A client signed in as ``name`` and its CSRF token."""
        c = await self.client()
        r = await c.post("/api/login", json={"name": name, "password": password},
                         headers={"Origin": self.origin})
        assert r.status == 200, await r.text()
        return c, (await r.json())["csrf"]

    async def close(self) -> None:
        for c in self.clients:
            await c.close()
        await self.server.close()


@pytest.fixture
def users(tmp_path: Path) -> UsersFile:
    u = UsersFile(tmp_path / "board-users.json")
    for name, role, units in (("rn.micu", "nurse", "MICU"), ("rn.sicu", "nurse", "SICU"),
                              ("charge", "nurse", "*"), ("viewer.micu", "viewer", "MICU")):
        u.add_account(name, role, units, hash_password(PASSWORD, FAST))
    return u


@pytest.fixture
def board_settings(tmp_path: Path) -> VigilSettings:
    return VigilSettings(data_dir=str(tmp_path), board_trusted_proxies="127.0.0.1",
                         board_proxy_groups='{"micu-nurses": "nurse:MICU", "screens": "viewer:*"}')


@pytest.fixture
def run_board(board_settings: VigilSettings, users: UsersFile) -> Iterator[Callable]:
    """``run_board(scenario, **settings)``: run ``await scenario(harness)`` on a fresh board."""

    def run(scenario, **overrides):
        settings = board_settings.model_copy(update=overrides) if overrides else board_settings

        async def main():
            h = BoardHarness(settings, users)
            await h.server.start_server()
            try:
                return await scenario(h)
            finally:
                await h.close()

        return asyncio.run(main())

    yield run
