"""Built-in accounts: argon2id password hashes, sign-in by password or one-time token.

Password checks cost the same whether the user exists or not: an unknown name is checked
against a dummy argon2id hash of the same parameters, and every failure gives the same
answer, so neither the reply nor its timing tells an attacker which names exist. The check
is CPU-heavy by design (argon2); the board runs it off the event loop and limits how many
run at once (see :mod:`vigil.board.guard`).

Who an identity is comes from the users file at every request (:meth:`Accounts.current`),
so removing an account, or changing its role or units, takes effect at once.
"""

from __future__ import annotations

from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from vigil.board.roles import Identity
from vigil.board.users_file import UsersFile

__all__ = ["Accounts", "MAX_PASSWORD", "MIN_PASSWORD", "hash_password"]

MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 takes any length; a megabyte "password" is a denial of service

_HASHER = PasswordHasher()  # argon2id, RFC 9106 low-memory profile (t=3, m=64 MiB, p=4)


def hash_password(password: str, hasher: PasswordHasher = _HASHER) -> str:
    """The argon2id hash stored in the users file (salted: two hashes of one password differ)."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValueError(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return hasher.hash(password)


class Accounts:
    """Checks credentials against a :class:`UsersFile`."""

    def __init__(self, users: UsersFile, hasher: PasswordHasher = _HASHER) -> None:
        self.users = users
        self.hasher = hasher
        self._dummy = hasher.hash("vigil-dummy-password-for-unknown-users")

    def check_password(self, name: object, password: object) -> Identity | None:
        """The identity if ``password`` is ``name``'s; None otherwise (same cost either way)."""
        name = name if isinstance(name, str) else ""
        password = password if isinstance(password, str) else ""
        account = self.users.account(name) if name else None
        stored = account.password_hash if account is not None else self._dummy
        try:
            ok = self.hasher.verify(stored, password[:MAX_PASSWORD])
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if not ok or account is None or not password:
            return None
        return Identity(account.name, account.role, account.units, "password")

    def known(self, name: str) -> bool:
        """Whether ``name`` is an account (for log lines only: never in a reply)."""
        return self.users.account(name) is not None

    def redeem_token(self, token: object, now: datetime) -> tuple[Identity, str] | None:
        """The identity and token id of a valid one-time token, which is then used up."""
        if not isinstance(token, str) or len(token) > 200:
            return None
        entry = self.users.redeem_token(token.strip(), now)
        if entry is None:
            return None
        return Identity(entry.name, entry.role, entry.units, "token"), entry.token_id

    def current(self, identity: Identity, token_id: str | None) -> Identity | None:
        """``identity`` as the users file has it now; None once it was removed."""
        if identity.method == "password":
            a = self.users.account(identity.name)
            return Identity(a.name, a.role, a.units, "password") if a is not None else None
        if identity.method == "token" and token_id is not None:
            t = self.users.token(token_id)
            return Identity(t.name, t.role, t.units, "token") if t is not None else None
        return identity
