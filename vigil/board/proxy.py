"""Single sign-on through a trusted reverse proxy (the oauth2-proxy convention).

An identity provider signs the person in at the proxy (oauth2-proxy with OpenID Connect),
which forwards each request with who it is: ``X-Forwarded-User`` / ``X-Forwarded-Email`` /
``X-Forwarded-Groups`` (``--pass-user-headers``) or ``X-Auth-Request-User`` / ``-Email`` /
``-Groups`` (``--set-xauthrequest``, an nginx ``auth_request`` set-up). Anyone can send
those headers, so they count **only when the TCP peer is one of the configured proxy
addresses** (``VIGIL_BOARD_TRUSTED_PROXIES``, addresses or CIDRs); from any other address
they are ignored, as are ``X-Forwarded-For`` and ``X-Forwarded-Proto``. The groups the
identity provider puts in the token map to a role and units (``VIGIL_BOARD_PROXY_GROUPS``,
e.g. ``{"icu-micu-nurses": "nurse:MICU", "rrt": "nurse:*", "icu-screens": "viewer:*"}``);
signed in at the proxy but in no mapped group means no access to the board.

>>> cfg = ProxyConfig.build(["10.1.2.3", "172.30.80.0/24"], {"micu": "nurse:MICU"})
>>> h = {"X-Forwarded-Email": "alice@hospital.org", "X-Forwarded-Groups": "staff,micu"}
>>> proxy_identity("192.0.2.66", h, cfg) is None          # not the proxy: ignored
True
>>> proxy_identity("172.30.80.10", h, cfg)
Identity(name='alice@hospital.org', role='nurse', units=frozenset({'MICU'}), method='proxy')
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from vigil.board.roles import ROLES, Identity, Role, parse_units, valid_name

__all__ = ["ProxyConfig", "ProxyRefused", "client_address", "forwarded_proto",
           "parse_group_map", "proxy_identity"]

USER_HEADERS = ("X-Forwarded-User", "X-Auth-Request-User")
EMAIL_HEADERS = ("X-Forwarded-Email", "X-Auth-Request-Email")
GROUP_HEADERS = ("X-Forwarded-Groups", "X-Auth-Request-Groups")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyRefused(Exception):
    """The proxy vouches for someone the board cannot let in (no mapped group, bad name)."""

    def __init__(self, reason: str, name: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.name = name


def parse_group_map(groups: Mapping[str, str]) -> dict[str, tuple[Role, frozenset[str]]]:
    """``{"micu": "nurse:MICU,CCU"}`` -> ``{"micu": ("nurse", {"MICU", "CCU"})}``."""
    out: dict[str, tuple[Role, frozenset[str]]] = {}
    for group, spec in groups.items():
        role, sep, units = str(spec).partition(":")
        if not sep or role not in ROLES:
            raise ValueError(f"group {group!r}: expected 'nurse:UNITS' or 'viewer:UNITS'")
        out[str(group)] = (role, parse_units(units))  # type: ignore[assignment]
    return out


@dataclass(frozen=True)
class ProxyConfig:
    networks: tuple[Network, ...] = ()
    groups: Mapping[str, tuple[Role, frozenset[str]]] = field(default_factory=dict)

    @classmethod
    def build(cls, trusted: Iterable[str], groups: Mapping[str, str]) -> ProxyConfig:
        nets = tuple(ipaddress.ip_network(t.strip(), strict=False) for t in trusted if t.strip())
        return cls(nets, parse_group_map(groups))

    def trusts(self, peer: str | None) -> bool:
        if not peer or not self.networks:
            return False
        try:
            addr = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in n for n in self.networks)


def _all(headers: Mapping[str, str], name: str) -> list[str]:
    getall = getattr(headers, "getall", None)  # a request's headers may repeat a name
    if getall is not None:
        return list(getall(name, []))
    value = headers.get(name)
    return [value] if value is not None else []


def _one(headers: Mapping[str, str], names: Iterable[str]) -> str | None:
    for name in names:
        values = _all(headers, name)
        if len(values) > 1:
            raise ProxyRefused("ambiguous", None)  # two identities in one request
        if values and values[0].strip():
            return values[0].strip()
    return None


def proxy_identity(peer: str | None, headers: Mapping[str, str],
                   config: ProxyConfig) -> Identity | None:
    """Who the trusted proxy says this request is from; None if it says nothing or the
    peer is not a trusted proxy (then the headers are ignored). Raises
    :class:`ProxyRefused` when it vouches for someone without access."""
    if not config.trusts(peer):
        return None
    email, user = _one(headers, EMAIL_HEADERS), _one(headers, USER_HEADERS)
    name = email or user
    if name is None:
        return None
    if not valid_name(name):
        raise ProxyRefused("bad_name", None)
    groups = {g.strip() for g in (_one(headers, GROUP_HEADERS) or "").split(",") if g.strip()}
    mapped = [config.groups[g] for g in sorted(groups) if g in config.groups]
    nurse = [units for role, units in mapped if role == "nurse"]
    chosen: list[frozenset[str]] = nurse or [units for _, units in mapped]
    if not chosen:
        raise ProxyRefused("no_group", name)
    units = frozenset().union(*chosen)
    return Identity(name, "nurse" if nurse else "viewer", parse_units(units), "proxy")


def client_address(peer: str | None, headers: Mapping[str, str], config: ProxyConfig) -> str:
    """The client's address: the TCP peer, or behind trusted proxies the nearest
    ``X-Forwarded-For`` hop that is not one of them."""
    peer = peer or "unknown"
    if not config.trusts(peer):
        return peer
    hops = [h.strip() for v in _all(headers, "X-Forwarded-For") for h in v.split(",")]
    hops = [h for h in hops if h]
    for hop in reversed(hops):
        if not config.trusts(hop):
            return _clean_address(hop)
    return _clean_address(hops[0]) if hops else peer


def forwarded_proto(peer: str | None, headers: Mapping[str, str], config: ProxyConfig) -> str | None:
    """``X-Forwarded-Proto`` of a trusted proxy ("https" behind a TLS proxy), else None."""
    if not config.trusts(peer):
        return None
    value = headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return value or None


def _clean_address(hop: str) -> str:
    try:
        return str(ipaddress.ip_address(hop))
    except ValueError:
        return "invalid"  # a hop that is not an address never reaches a log line as is
