"""The board's users file: accounts (argon2id hashes) and wall-screen sign-in tokens.

One JSON file (``VIGIL_BOARD_USERS_FILE``, default ``board-users.json`` in the data dir),
written by ``vigil users …`` and read by the board, which picks up changes without a restart
(a removed account or token ends its sessions at their next request). It holds no secret in
the clear: passwords are argon2id hashes, a token is stored as the SHA-256 of its random
secret (a token has 256 bits of entropy, so a fast hash is enough; a password does not, so
it gets argon2). The file is created mode 0600, every change is a locked read-modify-write
and an atomic rename, so the CLI and a running board never see half a file.

A token is ``<id>.<secret>``: the id finds the entry, the secret is compared in constant
time. It is one-time: redeeming it marks it used (kept, so ``vigil users list`` shows it and
``vigil users remove`` revokes the session it opened).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vigil.board.roles import ROLES, Role, parse_units, valid_name

__all__ = ["Account", "ScreenToken", "UsersFile", "UsersFileError"]

VERSION = 1


class UsersFileError(ValueError):
    """A users file that cannot be used, or a change that is not allowed."""


@dataclass(frozen=True)
class Account:
    name: str
    role: Role
    units: frozenset[str]
    password_hash: str
    created_at: str


@dataclass(frozen=True)
class ScreenToken:
    token_id: str
    name: str
    role: Role
    units: frozenset[str]
    digest: str
    created_at: str
    expires_at: str
    used_at: str | None

    def expired(self, now: datetime) -> bool:
        return datetime.fromisoformat(self.expires_at) <= now


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class UsersFile:
    """Read and change one users file. Reads are cached on the file's mtime and size."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None

    # --- reading ------------------------------------------------------------------------
    def _stat_key(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)  # a rename is a new inode

    def _read(self) -> dict[str, Any]:
        key = self._stat_key()
        if key is None:
            return {"version": VERSION, "users": {}, "tokens": {}}
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise UsersFileError(f"cannot read the users file {self.path}: {exc}") from exc
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise UsersFileError(f"{self.path} is not a Vigil users file (version {VERSION})")
        data.setdefault("users", {})
        data.setdefault("tokens", {})
        self._cache = (key, data)
        return data

    def account(self, name: str) -> Account | None:
        e = self._read()["users"].get(name)
        if not isinstance(e, dict):
            return None
        return Account(name, e["role"], frozenset(e["units"]), e["hash"], e.get("created_at", ""))

    def token(self, token_id: str) -> ScreenToken | None:
        e = self._read()["tokens"].get(token_id)
        if not isinstance(e, dict):
            return None
        return ScreenToken(token_id, e["name"], e["role"], frozenset(e["units"]), e["sha256"],
                           e.get("created_at", ""), e["expires_at"], e.get("used_at"))

    def accounts(self) -> list[Account]:
        return [a for n in sorted(self._read()["users"]) if (a := self.account(n))]

    def tokens(self) -> list[ScreenToken]:
        return [t for i in sorted(self._read()["tokens"]) if (t := self.token(i))]

    # --- changing -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _change(self) -> Iterator[dict[str, Any]]:
        """Locked read-modify-write; the new content replaces the file atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._cache = None
            data = json.loads(json.dumps(self._read()))  # a private copy to change
            yield data
            tmp = tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False,
                                              prefix=f".{self.path.name}.", suffix=".tmp")
            try:
                os.chmod(tmp.name, 0o600)
                json.dump(data, tmp, indent=2, sort_keys=True)
                tmp.flush()
                os.fsync(tmp.fileno())
                tmp.close()
                os.replace(tmp.name, self.path)
            except BaseException:
                tmp.close()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp.name)
                raise
            self._cache = None
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @staticmethod
    def _check(name: str, role: str, units: object) -> frozenset[str]:
        if not valid_name(name):
            raise UsersFileError("a name is 1-64 letters, digits or . _ @ + - (no spaces)")
        if role not in ROLES:
            raise UsersFileError(f"role must be one of {', '.join(ROLES)}")
        try:
            return parse_units(units)  # type: ignore[arg-type]
        except ValueError as exc:
            raise UsersFileError(str(exc)) from exc

    def add_account(self, name: str, role: str, units: object, password_hash: str, *,
                    replace: bool = False) -> None:
        unit_set = self._check(name, role, units)
        with self._change() as data:
            if name in data["users"] and not replace:
                raise UsersFileError(f"user {name} exists (remove it first, or --replace)")
            data["users"][name] = {"role": role, "units": sorted(unit_set),
                                   "hash": password_hash, "created_at": _now()}

    def add_token(self, name: str | None, role: str, units: object, expires_at: datetime) -> str:
        """Issue a one-time sign-in token; returns ``<id>.<secret>`` (shown once, never stored)."""
        token_id = secrets.token_hex(6)
        name = name or f"screen-{token_id}"
        unit_set = self._check(name, role, units)
        secret = secrets.token_urlsafe(32)
        with self._change() as data:
            data["tokens"][token_id] = {
                "name": name, "role": role, "units": sorted(unit_set), "sha256": _digest(secret),
                "created_at": _now(), "expires_at": expires_at.astimezone(UTC).isoformat(),
                "used_at": None}
        return f"{token_id}.{secret}"

    def redeem_token(self, token: str, now: datetime) -> ScreenToken | None:
        """The token's entry if ``token`` is valid, unused and unexpired; it is then used up.

        The secret is compared in constant time, and an unknown id costs the same comparison,
        so the answer's timing does not tell a wrong id from a wrong secret."""
        token_id, _, secret = token.partition(".")
        entry = self.token(token_id) if token_id and secret else None
        want = entry.digest if entry is not None else _digest("-")
        ok = hmac.compare_digest(want, _digest(secret))
        if entry is None or not ok or entry.used_at is not None or entry.expired(now):
            return None
        with self._change() as data:
            e = data["tokens"].get(token_id)
            if e is None or e.get("used_at") is not None:  # redeemed meanwhile
                return None
            e["used_at"] = now.astimezone(UTC).isoformat(timespec="seconds")
        return self.token(token_id)

    def remove(self, name: str) -> int:
        """Remove the account ``name`` and every token of that name or id; how many."""
        with self._change() as data:
            n = 1 if data["users"].pop(name, None) is not None else 0
            for token_id in [i for i, e in data["tokens"].items()
                             if i == name or e.get("name") == name]:
                del data["tokens"][token_id]
                n += 1
        return n

    def prune_tokens(self, now: datetime) -> int:
        """Drop tokens that expired unused (a used one stays until removed: it is a session)."""
        with self._change() as data:
            old = [i for i, e in data["tokens"].items()
                   if e.get("used_at") is None and datetime.fromisoformat(e["expires_at"]) <= now]
            for i in old:
                del data["tokens"][i]
        return len(old)
