"""Running the listeners: in the foreground (the CLI), in a thread, or as a subprocess.

``vigil demo --via hl7`` needs a listener next to the worker; :class:`Hl7Listener` runs one in
this process (its own event loop in a thread) and :func:`start_hl7_subprocess` as a separate
``vigil hl7-listen`` process, as a hospital would run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from aiohttp import web

from vigil.gateways.hl7_service import Hl7Service
from vigil.gateways.metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from vigil.gateways.mllp import MllpServer
from vigil.gateways.producer import GatewayProducer
from vigil.settings import VigilSettings

__all__ = ["Hl7Stack", "Hl7Listener", "serve_hl7", "serve_fhir", "start_hl7_subprocess",
           "wait_for_port"]

log = logging.getLogger(__name__)


class Hl7Stack:
    """Producer + service + MLLP server (+ /metrics), started and stopped together."""

    def __init__(self, settings: VigilSettings, *, host: str | None = None,
                 port: int | None = None, metrics_port: int | None = None) -> None:
        self.settings = settings
        self.metrics = GatewayMetrics()
        self.producer = GatewayProducer(settings, client_id="vigil-hl7")
        self.service = Hl7Service(settings, self.producer, self.metrics)
        self.server = MllpServer(
            self.service.handle, self.service.refuse,
            host=host or settings.hl7_host,
            port=settings.hl7_port if port is None else port,
            max_bytes=settings.gateway_max_message_bytes,
            idle_timeout_s=settings.gateway_idle_timeout_s,
            read_timeout_s=settings.gateway_read_timeout_s,
            max_connections=settings.gateway_max_connections,
            metrics=self.metrics)
        self.metrics_port = settings.gateway_metrics_port if metrics_port is None else metrics_port
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> Hl7Stack:
        await self.producer.start()
        await self.server.start()
        if self.metrics_port:
            app = web.Application()

            async def metrics(_r: web.Request) -> web.Response:
                return web.Response(body=self.metrics.render(),
                                    headers={"Content-Type": CONTENT_TYPE_LATEST})

            async def health(_r: web.Request) -> web.Response:
                return web.json_response({"status": "ok", "mllp_port": self.port})

            app.router.add_get("/metrics", metrics)
            app.router.add_get("/health", health)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.server.host, self.metrics_port)
            await site.start()
            self.metrics_port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        await self.server.stop()
        self.service.close()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.producer.stop()


async def serve_hl7(settings: VigilSettings, *, host: str | None = None,
                    port: int | None = None) -> None:
    """``vigil hl7-listen``: serve until SIGINT / SIGTERM."""
    stack = await Hl7Stack(settings, host=host, port=port).start()
    print(f"MLLP listener on {stack.server.host}:{stack.port} -> Kafka "
          f"{settings.bootstrap_servers} ({settings.topic_vitals}); hospital time zone "
          f"{settings.hl7_timezone}; metrics on :{stack.metrics_port}/metrics", flush=True)
    await _until_signal()
    await stack.stop()


async def serve_fhir(settings: VigilSettings, *, host: str | None = None,
                     port: int | None = None) -> None:
    """``vigil fhir-listen``: serve until SIGINT / SIGTERM."""
    from vigil.gateways.fhir import make_app

    metrics = GatewayMetrics()
    app = make_app(settings, GatewayProducer(settings, client_id="vigil-fhir"), metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host or settings.fhir_host,
                       settings.fhir_port if port is None else port)
    await site.start()
    print(f"FHIR endpoint on http://{host or settings.fhir_host}:"
          f"{runner.addresses[0][1]}/fhir -> Kafka {settings.bootstrap_servers}", flush=True)
    await _until_signal()
    await runner.cleanup()


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


class Hl7Listener:
    """An MLLP listener in a background thread of this process (tests, bench, demo).

    >>> with Hl7Listener(settings, port=0) as listener:   # doctest: +SKIP
    ...     send_to(listener.port)
    """

    def __init__(self, settings: VigilSettings, *, host: str = "127.0.0.1", port: int = 0,
                 metrics_port: int = 0) -> None:
        self.settings = settings
        self.host, self._port, self._metrics_port = host, port, metrics_port
        self.loop = asyncio.new_event_loop()
        self.stack: Hl7Stack | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, name="vigil-hl7",
                                       daemon=True)

    @property
    def port(self) -> int:
        assert self.stack is not None
        return self.stack.port

    @property
    def metrics(self) -> GatewayMetrics:
        assert self.stack is not None
        return self.stack.metrics

    @property
    def metrics_url(self) -> str | None:
        if self.stack is None or not self.stack.metrics_port:
            return None
        return f"http://{self.host}:{self.stack.metrics_port}/metrics"

    def start(self, timeout_s: float = 30.0) -> Hl7Listener:
        self.thread.start()
        stack = Hl7Stack(self.settings, host=self.host, port=self._port,
                         metrics_port=self._metrics_port)
        self.stack = asyncio.run_coroutine_threadsafe(stack.start(), self.loop).result(timeout_s)
        return self

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.stack is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.stack.stop(), self.loop).result(timeout_s)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout_s)
        if not self.thread.is_alive():
            self.loop.close()

    def __enter__(self) -> Hl7Listener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for_port(host: str, port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s:.0f} s")


def start_hl7_subprocess(settings: VigilSettings, port: int, log_path: Path,
                         metrics_port: int = 0) -> subprocess.Popen[bytes]:
    """``vigil hl7-listen`` as a child process with ``settings`` in its environment.

    The child gets the settings that differ from the defaults as ``VIGIL_*`` variables; the
    caller stops it with SIGTERM (``vigil.runtime.stop_process`` does SIGTERM then SIGKILL).
    """
    from vigil.broker import die_with_parent
    from vigil.runtime import settings_env

    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(settings_env(settings))  # secrets included, as every child of Vigil gets them
    env["VIGIL_GATEWAY_METRICS_PORT"] = str(metrics_port)
    out = open(log_path, "ab")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "vigil", "hl7-listen", "--host",
                                 "127.0.0.1", "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                preexec_fn=die_with_parent)
    finally:
        out.close()
    try:
        wait_for_port("127.0.0.1", port)
    except TimeoutError:
        proc.terminate()
        raise
    return proc
