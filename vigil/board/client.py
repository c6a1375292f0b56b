"""A small signed-in client of a running board (standard library only), and the demo's
one-time sign-in links.

``vigil demo`` stays one command: it issues a one-time link for the person at the screen
(a nurse on all units, named ``demo``) and a viewer token for its own check of
``/api/alerts``, both in the demo's users file, and prints the link the way Jupyter prints
its token URL.
"""

from __future__ import annotations

import http.cookiejar
import json
import urllib.request
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from vigil.board.users_file import UsersFile
from vigil.settings import VigilSettings

__all__ = ["BoardClient", "demo_tokens"]


def demo_tokens(settings: VigilSettings, valid_hours: float = 24.0) -> tuple[str, str]:
    """(the link token for the person, a viewer token for the demo's own poll)."""
    users = UsersFile(settings.board_users_path)
    until = datetime.now(UTC) + timedelta(hours=valid_hours)
    return (users.add_token("demo", "nurse", "*", until),
            users.add_token("demo-check", "viewer", "*", until))


class BoardClient:
    """Signs in with a token (a session cookie, as a browser) and reads the board's API."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.timeout_s = timeout_s
        self.csrf: str | None = None
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        headers = {"Accept": "application/json"}
        data = None
        if method != "GET":
            data = json.dumps(body or {}).encode()
            headers.update({"Content-Type": "application/json", "Origin": self.origin})
            if self.csrf:
                headers["X-CSRF-Token"] = self.csrf
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        with self._opener.open(req, timeout=self.timeout_s) as r:
            return json.loads(r.read())

    def sign_in(self, token: str) -> dict:
        """Redeem a one-time token; raises urllib.error.HTTPError (401) if it is not valid."""
        answer = self._request("POST", "/api/login", {"token": token})
        self.csrf = answer["csrf"]
        return answer["identity"]

    def get_json(self, path: str) -> dict:
        return self._request("GET", path)

    def post_json(self, path: str, body: dict) -> dict:
        return self._request("POST", path, body)
