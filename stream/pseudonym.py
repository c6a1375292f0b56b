"""Pseudonymisation at the edge: source patient ids never enter Kafka.

A keyed hash (HMAC-SHA256) turns a source id into a stable pseudonym: the same patient gets
the same key on every record and every run, so windows and alerts work, but the id cannot
be recovered without the key, which stays with the hospital's integration.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["pseudonymize"]


def pseudonymize(source_id: str, key: str, namespace: str = "") -> str:
    """A short stable pseudonym for ``source_id``.

    >>> p = pseudonymize("p000001", "k", "physionet2019")
    >>> p == pseudonymize("p000001", "k", "physionet2019"), p.startswith("pt-"), len(p)
    (True, True, 19)
    >>> p != pseudonymize("p000001", "other key", "physionet2019")
    True
    """
    digest = hmac.new(key.encode(), f"{namespace}:{source_id}".encode(), hashlib.sha256)
    return "pt-" + digest.hexdigest()[:16]
