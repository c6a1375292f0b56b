"""Kafka over TLS, end to end on this machine: stunnel terminates TLS in front of tansu.

tansu 0.6's own TLS does not work (docs/security.md), so the test puts Debian's ``stunnel4``
in front of an embedded broker whose advertised listener is the stunnel endpoint: every
client bootstraps through TLS and is told to reconnect through TLS. Nothing reaches the
broker in clear except from stunnel on 127.0.0.1. A throwaway CA and server certificate are
made with the ``openssl`` command in the test's own folder.

What runs over TLS: topic creation (kafka-python admin), the worker (its start-up checks with
kafka-python, faust's consumer through Vigil's transport and its producer, Vigil's aiokafka
output publisher), vitals produced by kafka-python, the output reader, the board's feed
(aiokafka consumer) and its acknowledgement producer, the worker's acks agent. A client that
trusts another CA is refused by each library.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kafka import KafkaProducer

from vigil.board.auth import hash_password
from vigil.board.users_file import UsersFile
from vigil.broker import BrokerError, EmbeddedBroker, die_with_parent, free_port, wait_for_broker
from vigil.kafka_config import aiokafka_options, kafka_python_options, ssl_context
from vigil.runtime import BoardProcess, OutputCollector, WorkerProcess, stop_process
from vigil.settings import VigilSettings
from vigil.stream.topics import ensure_topics

from .waiting import wait_until

pytestmark = pytest.mark.broker



def openssl(*args: str, cwd: Path) -> None:
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr


def make_ca(folder: Path, name: str) -> Path:
    """A self-signed CA (EC P-256, valid 2 days): ``name.pem`` and ``name.key``."""
    openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
            "-subj", f"/CN=Vigil test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    return folder / f"{name}.pem"


def make_server_cert(folder: Path, ca: str) -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1 / localhost signed by ``ca``."""
    (folder / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
            cwd=folder)
    openssl("x509", "-req", "-in", "server.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
            cwd=folder)
    return folder / "server.pem", folder / "server.key"


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class TlsBroker:
    port: int  # the TLS endpoint (stunnel); the broker's own port is not used by clients
    ca: Path
    wrong_ca: Path
    folder: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def settings(self, cafile: Path | None = None, **kw: Any) -> VigilSettings:
        return VigilSettings(kafka_url=self.bootstrap, kafka_security_protocol="SSL",
                             kafka_ssl_cafile=str(cafile or self.ca),
                             pseudonym_key="tls-test-key", **kw)


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    """tansu on a private port, advertised as the stunnel endpoint; stunnel in front of it.

    Both are started and stopped here (a fresh CI machine has neither running)."""
    stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    assert stunnel, "stunnel4 (Debian package, scripts/debian-packages.txt) is not installed"
    folder = tmp_path_factory.mktemp("tls")
    ca = make_ca(folder, "ca")
    wrong_ca = make_ca(folder, "other-ca")
    cert, key = make_server_cert(folder, "ca")
    broker_port, tls_port = free_port(), free_port()
    (folder / "stunnel.conf").write_text(
        "foreground = yes\npid =\ndebug = notice\n"
        f"[kafka]\naccept = 127.0.0.1:{tls_port}\nconnect = 127.0.0.1:{broker_port}\n"
        f"cert = {cert}\nkey = {key}\nsslVersionMin = TLSv1.2\n")
    broker = EmbeddedBroker(broker_port, log_path=folder / "tansu.log",
                            advertised_url=f"tcp://127.0.0.1:{tls_port}").start()
    log = open(folder / "stunnel.log", "ab")
    proc = subprocess.Popen([stunnel, str(folder / "stunnel.conf")], stdout=log,
                            stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    log.close()
    try:
        wait_until(lambda: proc.poll() is None and port_open(tls_port), 15,
                   lambda: f"stunnel not listening; log:\n{(folder / 'stunnel.log').read_text()}")
        tls = TlsBroker(tls_port, ca, wrong_ca, folder)
        wait_for_broker(tls.bootstrap, 15, options=kafka_python_options(tls.settings()))
        yield tls
    finally:
        stop_process(proc, 5)
        broker.stop()


def tls_settings(tls: TlsBroker, tmp_path: Path) -> VigilSettings:
    tag = uuid.uuid4().hex[:8]
    return tls.settings(
        app_id=f"vigil-tls-{tag}", partitions=2, data_dir=str(tmp_path / "state"),
        web_port=free_port(), sepsis_scorer="qsofa", deterioration_scorer="news2",
        **{f"topic_{t}": f"tls{tag}.{t}" for t in ("vitals", "scores", "alerts", "labels",
                                                   "dlq", "acks")})


def test_the_broker_is_reachable_only_through_tls(tls_broker) -> None:
    """The TLS endpoint presents the test CA's certificate for 127.0.0.1."""
    ctx = ssl_context(tls_broker.settings())
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    with socket.create_connection(("127.0.0.1", tls_broker.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            assert dict(x[0] for x in tls.getpeercert()["subject"])["commonName"] == "127.0.0.1"


def test_a_worker_and_the_board_run_end_to_end_over_tls(tls_broker, tmp_path) -> None:
    """Vitals produced over TLS are scored and alert; the board (signed in) shows the alert
    it read over TLS; its acknowledgement goes back over TLS and the worker applies it."""
    s = tls_settings(tls_broker, tmp_path)
    ensure_topics(s)
    UsersFile(s.board_users_path).add_account("rn.micu", "nurse", "MICU",
                                              hash_password("micu-night-shift"))
    now = datetime.now(UTC)
    sick = [{"code": c, "value": v} for c, v in
            dict(HR=125, RR=30, SBP=85, SpO2=89, Temp=39.4).items()]
    vitals = {"patient": "pt-tls-1", "event_time": (now - timedelta(minutes=5)).isoformat(),
              "unit": "MICU", "bed": "B-03", "event_id": "tls-1", "observations": sick}
    worker = WorkerProcess(s, web_port=s.web_port, log_path=tmp_path / "worker.log").start()
    collector = None
    try:
        worker.wait_ready(120)
        collector = OutputCollector(s).start()
        producer = KafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all",
                                 **kafka_python_options(s))
        producer.send(s.topic_vitals, key=b"pt-tls-1", value=json.dumps(vitals).encode())
        producer.flush()
        producer.close()

        def alert_in(state: str) -> Any:
            return next((a for a in list(collector.alerts.values())
                         if a.kind == "deterioration" and a.state == state), None)

        raised = wait_until(lambda: alert_in("raised"), 60, lambda: (
            f"no alert over TLS; scored {len(collector.score_ids)}; worker log:\n"
            + (tmp_path / "worker.log").read_text()[-3000:]))
        assert raised.patient == "pt-tls-1" and raised.unit == "MICU"

        with BoardProcess(s, tmp_path / "board.log") as board:  # /health 200: it reads Kafka
            shown, ack = asyncio.run(_board_shows_and_acks(board.url, raised.alert_id))
        assert shown["feed"] == {"ready": True, "error": None}
        assert raised.alert_id in [a["alert_id"] for a in shown["active"]]
        assert ack == (200, "sent")
        acked = wait_until(lambda: alert_in("acknowledged"), 60,
                           lambda: "the board's ack over TLS never reached the worker")
        assert acked.alert_id == raised.alert_id and acked.acknowledged_by == "rn.micu"
    finally:
        if collector is not None:
            collector.stop()
        worker.stop()
    # nothing in clear on the broker's side but stunnel, and no secret in any log
    for log in ("worker.log", "board.log"):
        assert "tls-test-key" not in (tmp_path / log).read_text()


async def _board_shows_and_acks(url: str, alert_id: str) -> tuple[dict, tuple[int, str]]:
    origin = {"Origin": url}
    # unsafe=True: aiohttp keeps no cookies of IP-address hosts otherwise
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{url}/api/login", headers=origin, json={
                "name": "rn.micu", "password": "micu-night-shift"}) as r:
            assert r.status == 200, await r.text()
            post = {**origin, "X-CSRF-Token": (await r.json())["csrf"]}
        deadline = time.monotonic() + 30
        shown: dict = {}
        while time.monotonic() < deadline:
            async with http.get(f"{url}/api/alerts") as r:
                shown = await r.json()
            if any(a["alert_id"] == alert_id for a in shown["active"]):
                break
            await asyncio.sleep(0.1)
        async with http.post(f"{url}/api/ack", headers=post, json={"alert_id": alert_id}) as r:
            return shown, (r.status, (await r.json()).get("status"))


def test_a_client_with_the_wrong_ca_is_refused(tls_broker, caplog) -> None:
    """Trusting another CA: the handshake fails in Python's ssl, kafka-python and aiokafka
    alike, so no client of Vigil's talks to a broker it cannot authenticate."""
    wrong = tls_broker.settings(cafile=tls_broker.wrong_ca)
    ctx = ssl_context(wrong)
    assert ctx is not None
    with socket.create_connection(("127.0.0.1", tls_broker.port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            ctx.wrap_socket(raw, server_hostname="127.0.0.1")

    # kafka-python (the worker's start-up checks, the replay, topic creation): the error
    # says that the certificate was refused, not merely that no broker answered
    with pytest.raises(BrokerError, match="TLS handshake .* certificate verify failed"):
        wait_for_broker(tls_broker.bootstrap, timeout_s=3, options=kafka_python_options(wrong))

    caplog.set_level(logging.DEBUG, logger="aiokafka")  # the board, the worker's outputs

    async def aiokafka_start() -> None:
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaConnectionError

        p = AIOKafkaProducer(bootstrap_servers=wrong.bootstrap_servers,
                             request_timeout_ms=3000, **aiokafka_options(wrong))
        with pytest.raises(KafkaConnectionError):
            await p.start()
        await p.stop()

    asyncio.run(aiokafka_start())
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text or "certificate verify failed" in caplog.text

    # and a PLAINTEXT client does not get through the TLS endpoint either
    with pytest.raises(BrokerError):
        wait_for_broker(tls_broker.bootstrap, timeout_s=2)
