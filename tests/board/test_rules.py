"""The pure rules of the board's door: roles and units, sessions, rate limits, the
trusted-proxy rule, the users file. No network, no clock: time is passed in."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta

import pytest

from vigil.board.auth import Accounts, hash_password
from vigil.board.limits import FailureLimiter, StreamLimiter
from vigil.board.proxy import ProxyConfig, ProxyRefused, client_address, proxy_identity
from vigil.board.roles import Identity, parse_units
from vigil.board.sessions import SessionsFull, SessionStore
from vigil.board.state import BoardState
from vigil.board.users_file import UsersFile, UsersFileError
from vigil.board.view import snapshot

from .conftest import FAST, PASSWORD, alert

MICU_NURSE = Identity("rn.micu", "nurse", frozenset({"MICU"}), "password")
MICU_VIEWER = Identity("screen-1", "viewer", frozenset({"MICU"}), "token")
CHARGE = Identity("charge", "nurse", frozenset({"*"}), "password")


# --- roles and units ---------------------------------------------------------------------

def test_a_nurse_sees_and_acknowledges_only_her_units() -> None:
    assert MICU_NURSE.sees("MICU") and MICU_NURSE.can_acknowledge("MICU")
    assert not MICU_NURSE.sees("SICU") and not MICU_NURSE.can_acknowledge("SICU")
    assert not MICU_NURSE.sees(None)  # an alert without a unit is for * only
    assert not MICU_NURSE.sees("micu")  # unit names are exact


def test_a_viewer_reads_and_never_acknowledges() -> None:
    assert MICU_VIEWER.sees("MICU") and not MICU_VIEWER.can_acknowledge("MICU")
    assert not Identity("v", "viewer", frozenset({"*"}), "token").can_acknowledge("SICU")


def test_all_units_covers_every_unit_and_alerts_without_one() -> None:
    assert all(CHARGE.sees(u) and CHARGE.can_acknowledge(u) for u in ("MICU", "SICU", None))
    assert parse_units("MICU,*") == frozenset({"*"})


@pytest.mark.parametrize("bad", ["", " , ", "MI CU", "MICU,<script>", "x" * 65])
def test_bad_unit_lists_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_units(bad)


def test_the_snapshot_leaves_other_units_out_on_the_server() -> None:
    b = BoardState()
    for a in (alert(1, "MICU"), alert(2, "SICU"), alert(3, None), alert(4, "MICU")):
        b.apply_alert(a)
    b.apply_alert(alert(5, "SICU", state="resolved"))
    mine = snapshot(b, sees=MICU_NURSE.sees)
    assert [a["alert_id"] for a in mine["active"]] == ["a1", "a4"]
    assert mine["resolved"] == [] and mine["units"] == ["MICU"]
    assert "SICU" not in json.dumps(mine) and "pt-0002" not in json.dumps(mine)
    # asking for another unit gives nothing, not that unit's alerts
    assert snapshot(b, "SICU", sees=MICU_NURSE.sees)["active"] == []
    every = snapshot(b, sees=CHARGE.sees)
    assert {a["alert_id"] for a in every["active"]} == {"a1", "a2", "a3", "a4"}


# --- sessions ----------------------------------------------------------------------------

def test_sessions_end_when_idle_and_at_their_absolute_limit() -> None:
    clock = [0.0]
    store = SessionStore(idle_s=60, max_s=300, screen_max_s=1000, clock=lambda: clock[0])
    s = store.create(MICU_NURSE)
    for t in range(50, 301, 50):  # in use every 50 s: idle never reached
        clock[0] = t
        assert store.get(s.sid) is s
    clock[0] = 301  # but 300 s after sign-in it ends anyway
    assert store.get(s.sid) is None and len(store) == 0

    screen = store.create(MICU_VIEWER)  # a wall-screen token's session lives longer
    clock[0] += 900
    assert store.get(screen.sid, touch=False) is None  # ... though not if idle
    screen = store.create(MICU_VIEWER)
    for _ in range(20):
        clock[0] += 50
        assert store.get(screen.sid) is screen
    clock[0] += 50
    assert store.get(screen.sid) is None  # 1050 s > 1000 s


def test_session_ids_are_random_and_a_dropped_session_is_gone() -> None:
    store = SessionStore(idle_s=60, max_s=300, screen_max_s=1000)
    a, b = store.create(MICU_NURSE), store.create(MICU_NURSE)
    assert a.sid != b.sid and a.csrf != b.csrf and len(a.sid) >= 43
    assert store.get("not-a-session") is None and store.get("") is None
    assert store.drop(a.sid) and store.get(a.sid) is None and store.get(b.sid) is b
    assert a.sid not in repr(store._sessions)  # keyed by the id's hash, not the id


def test_the_session_table_is_bounded() -> None:
    clock = [0.0]
    store = SessionStore(idle_s=60, max_s=300, screen_max_s=1000, capacity=2,
                         clock=lambda: clock[0])
    store.create(MICU_NURSE), store.create(MICU_NURSE)
    with pytest.raises(SessionsFull):
        store.create(MICU_NURSE)
    clock[0] = 61  # expired ones make room
    store.create(MICU_NURSE)


# --- rate limits ---------------------------------------------------------------------------

def test_five_failures_in_five_minutes_block_the_key_until_the_oldest_leaves() -> None:
    clock = [0.0]
    lim = FailureLimiter(max_failures=5, window_s=300, clock=lambda: clock[0])
    for t in range(5):
        clock[0] = t * 10
        assert lim.retry_after("ip:a", "user:x") == 0
        lim.fail("ip:a", "user:x")
    assert lim.retry_after("ip:a") == 300 - 40
    assert lim.retry_after("user:x", "ip:other") == 260  # the name is blocked from anywhere
    assert lim.retry_after("ip:b", "user:y") == 0  # others are not
    clock[0] = 300  # the first failure left the window
    assert lim.retry_after("ip:a") == 0
    lim.fail("ip:a")
    assert lim.retry_after("ip:a") > 0


def test_a_success_clears_the_name_not_the_address_and_the_table_is_bounded() -> None:
    lim = FailureLimiter(max_failures=2, window_s=300, max_keys=3, clock=lambda: 0.0)
    lim.fail("ip:a", "user:x")
    lim.fail("ip:a", "user:x")
    lim.clear("user:x")
    assert lim.retry_after("user:x") == 0 and lim.retry_after("ip:a") > 0
    for k in ("k1", "k2", "k3", "k4"):
        lim.fail(k)
    assert len(lim._fails) == 3


def test_stream_caps_per_session_per_client_and_in_total() -> None:
    lim = StreamLimiter(per_session=2, per_client=3, total=4)
    assert lim.acquire("s1", "10.0.0.1") is None and lim.acquire("s1", "10.0.0.1") is None
    assert lim.acquire("s1", "10.0.0.1") == "per_session"
    assert lim.acquire("s2", "10.0.0.1") is None
    assert lim.acquire("s3", "10.0.0.1") == "per_client"
    assert lim.acquire("s3", "10.0.0.2") is None
    assert lim.acquire("s4", "10.0.0.3") == "total"
    lim.release("s1", "10.0.0.1")
    assert lim.acquire("s4", "10.0.0.3") is None and lim.open == 4


# --- the trusted-proxy rule --------------------------------------------------------------

PROXY = ProxyConfig.build(["172.30.80.10", "10.8.0.0/16"],
                          {"micu-nurses": "nurse:MICU", "sicu-nurses": "nurse:SICU",
                           "screens": "viewer:*"})
HEADERS = {"X-Forwarded-User": "alice", "X-Forwarded-Email": "alice@hospital.org",
           "X-Forwarded-Groups": "staff,micu-nurses"}


@pytest.mark.parametrize("peer", ["192.0.2.7", "172.30.80.11", "127.0.0.1", None, "bogus"])
def test_identity_headers_from_an_untrusted_address_are_ignored(peer) -> None:
    assert proxy_identity(peer, HEADERS, PROXY) is None
    # and so is its X-Forwarded-For: the client is the TCP peer
    assert client_address(peer, {"X-Forwarded-For": "10.9.9.9"}, PROXY) == (peer or "unknown")


def test_nobody_is_trusted_without_configured_proxies() -> None:
    none = ProxyConfig.build([""], {})
    assert proxy_identity("127.0.0.1", HEADERS, none) is None


@pytest.mark.parametrize("peer", ["172.30.80.10", "10.8.3.4", "::ffff:172.30.80.10"])
def test_a_trusted_proxy_signs_people_in_with_their_groups_role(peer) -> None:
    got = proxy_identity(peer, HEADERS, PROXY)
    assert got == Identity("alice@hospital.org", "nurse", frozenset({"MICU"}), "proxy")
    auth_request = {"X-Auth-Request-User": "bob", "X-Auth-Request-Groups": "screens"}
    assert proxy_identity(peer, auth_request, PROXY) == Identity(
        "bob", "viewer", frozenset({"*"}), "proxy")
    both = {**HEADERS, "X-Forwarded-Groups": "micu-nurses,sicu-nurses,screens"}
    assert proxy_identity(peer, both, PROXY).units == frozenset({"MICU", "SICU"})
    assert proxy_identity(peer, {"X-Forwarded-Groups": "screens"}, PROXY) is None  # nobody


def test_a_trusted_proxy_user_without_a_mapped_group_gets_no_access() -> None:
    with pytest.raises(ProxyRefused) as e:
        proxy_identity("172.30.80.10", {**HEADERS, "X-Forwarded-Groups": "staff"}, PROXY)
    assert e.value.reason == "no_group" and e.value.name == "alice@hospital.org"
    with pytest.raises(ProxyRefused):
        proxy_identity("172.30.80.10", {"X-Forwarded-User": "a b\nc"}, PROXY)


def test_the_client_address_behind_trusted_proxies_is_the_first_untrusted_hop() -> None:
    xff = {"X-Forwarded-For": "203.0.113.9, 198.51.100.4, 10.8.0.2"}
    assert client_address("172.30.80.10", xff, PROXY) == "198.51.100.4"
    assert client_address("172.30.80.10", {}, PROXY) == "172.30.80.10"
    assert client_address("172.30.80.10", {"X-Forwarded-For": "x\ny"}, PROXY) == "invalid"


# --- the users file and accounts --------------------------------------------------------

def test_accounts_are_argon2id_hashes_in_a_private_file(tmp_path) -> None:
    users = UsersFile(tmp_path / "u" / "board-users.json")
    users.add_account("rn.micu", "nurse", "MICU", hash_password(PASSWORD, FAST))
    text = users.path.read_text()
    assert PASSWORD not in text and "$argon2id$" in text
    assert stat.S_IMODE(os.stat(users.path).st_mode) == 0o600
    with pytest.raises(UsersFileError):
        users.add_account("rn.micu", "nurse", "MICU", "x")  # no silent overwrite
    for name, role, units in (("has space", "nurse", "MICU"), ("ok", "admin", "MICU"),
                              ("ok", "nurse", "")):
        with pytest.raises(UsersFileError):
            users.add_account(name, role, units, "x")
    with pytest.raises(ValueError):
        hash_password("short")
    accounts = Accounts(users, FAST)
    assert accounts.check_password("rn.micu", PASSWORD) == Identity(
        "rn.micu", "nurse", frozenset({"MICU"}), "password")
    assert accounts.check_password("rn.micu", "wrong password") is None
    assert accounts.check_password("rn.micu", None) is None


def test_an_unknown_user_costs_the_same_argon2_check_as_a_wrong_password(tmp_path) -> None:
    users = UsersFile(tmp_path / "board-users.json")
    users.add_account("rn.micu", "nurse", "MICU", hash_password(PASSWORD, FAST))
    accounts = Accounts(users, FAST)
    calls: list[str] = []
    real = accounts.hasher.verify

    class Counting:
        def verify(self, stored, password):
            calls.append(stored.split("$")[1])
            return real(stored, password)

    accounts.hasher = Counting()  # type: ignore[assignment]
    assert accounts.check_password("nobody", PASSWORD) is None
    assert accounts.check_password("rn.micu", "wrong password") is None
    assert accounts.check_password("", "") is None
    assert calls == ["argon2id"] * 3  # one argon2id verification each, known name or not


def test_removing_or_changing_an_account_applies_to_its_sessions(tmp_path) -> None:
    users = UsersFile(tmp_path / "board-users.json")
    users.add_account("rn.micu", "nurse", "MICU", hash_password(PASSWORD, FAST))
    accounts = Accounts(users, FAST)
    ident = accounts.check_password("rn.micu", PASSWORD)
    users.add_account("rn.micu", "viewer", "MICU,CCU", "x", replace=True)
    assert accounts.current(ident, None) == Identity(
        "rn.micu", "viewer", frozenset({"MICU", "CCU"}), "password")
    assert users.remove("rn.micu") == 1 and accounts.current(ident, None) is None


def test_tokens_are_one_time_expire_and_are_stored_only_as_a_hash(tmp_path) -> None:
    users = UsersFile(tmp_path / "board-users.json")
    now = datetime.now(UTC)
    token = users.add_token(None, "viewer", "MICU", now + timedelta(hours=1))
    token_id, secret = token.split(".")
    assert secret not in users.path.read_text() and len(secret) >= 43
    accounts = Accounts(users, FAST)
    assert accounts.redeem_token(f"{token_id}.wrong", now) is None
    assert accounts.redeem_token("nosuchid.secret", now) is None
    got = accounts.redeem_token(token, now)
    assert got == (Identity(f"screen-{token_id}", "viewer", frozenset({"MICU"}), "token"),
                   token_id)
    assert accounts.redeem_token(token, now) is None  # one-time
    assert users.token(token_id).used_at is not None
    assert accounts.current(got[0], token_id) is not None
    assert users.remove(f"screen-{token_id}") == 1  # revoking it ends its session
    assert accounts.current(got[0], token_id) is None

    late = users.add_token("ward-3", "viewer", "*", now + timedelta(minutes=5))
    assert accounts.redeem_token(late, now + timedelta(minutes=6)) is None
    assert users.prune_tokens(now + timedelta(minutes=6)) == 1
