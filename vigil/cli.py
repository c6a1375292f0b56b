"""The ``vigil`` command line: thin wrappers that parse options and call the library."""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from vigil.settings import VigilSettings

app = typer.Typer(help="Vigil: real-time ICU deterioration and sepsis alerting on Kafka.",
                  no_args_is_help=True, add_completion=False)

__all__ = ["app", "main"]


def _settings() -> VigilSettings:
    """The settings, or a plain error and exit code 2: a refused setting (the development
    pseudonym key with an external Kafka, an incomplete TLS/SASL setup) is an operator's
    mistake to read at a glance, not a traceback (whose locals could hold the environment)."""
    from pydantic import ValidationError

    try:
        return VigilSettings()
    except ValidationError as exc:
        typer.echo(f"vigil: refusing to start, {exc}", err=True)
        raise typer.Exit(2) from None


def _logging(level: str = "info") -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python logs every connection


@app.command()
def broker(port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default: VIGIL_EMBEDDED_BROKER_PORT).")] = None,
           create_topics: Annotated[bool, typer.Option(help="Create Vigil's topics once it is up.")] = True) -> None:
    """Run the embedded tansu Kafka-protocol broker in the foreground until Ctrl-C."""
    from vigil.broker import EmbeddedBroker
    from vigil.stream.topics import ensure_topics

    _logging()
    s = _settings()
    if port is not None:
        s = s.model_copy(update={"embedded_broker_port": port})
    with EmbeddedBroker(s.embedded_broker_port) as b:
        if create_topics:
            ensure_topics(s.model_copy(update={"kafka_url": b.bootstrap}))
        typer.echo(f"tansu broker on {b.bootstrap} (memory storage: nothing survives a restart). "
                   "Ctrl-C stops it.")
        try:
            while b.proc is not None and b.proc.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


@app.command()
def worker(web_port: Annotated[int | None, typer.Option(help="Port of /metrics and /health (default VIGIL_WEB_PORT).")] = None) -> None:
    """Run one faust worker (several may share a consumer group)."""
    from vigil.worker import run_worker

    s = _settings()
    if web_port is not None:
        s = s.model_copy(update={"web_port": web_port})
    _logging(s.log_level)
    run_worker(s)


@app.command()
def board(host: Annotated[str | None, typer.Option(help="Interface to listen on (default VIGIL_BOARD_HOST).")] = None,
          port: Annotated[int | None, typer.Option(help="Port of the board page (default VIGIL_BOARD_PORT).")] = None) -> None:
    """Serve the live alert board (alerts and acks topics; Acknowledge produces an ack)."""
    from vigil.board import run_board

    s = _settings()
    s = s.model_copy(update={k: v for k, v in (("board_host", host), ("board_port", port))
                             if v is not None})
    _logging(s.log_level)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    typer.echo(f"alert board on http://{s.board_host}:{s.board_port}/ (Kafka {s.bootstrap_servers})")
    run_board(s)


@app.command()
def replay(
    path: Annotated[Path | None, typer.Argument(help="PhysioNet 2019/2012 folder or .tar.gz archive (default: the shipped sample).")] = None,
    speed: Annotated[float, typer.Option(help="Event-time seconds per wall second; 0 = as fast as possible.")] = 3600.0,
    patients: Annotated[int | None, typer.Option(help="Replay at most this many patients.")] = None,
    stagger_hours: Annotated[float, typer.Option(help="Spread admissions over this many hours.")] = 24.0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Stream recorded ICU data into the vitals topic in event-time order (labels too).

    Exits 1 with one line on stderr when the broker did not acknowledge every record."""
    from kafka.errors import KafkaError

    from vigil.sample import sample_path
    from vigil.stream.replay.replayer import ReplayError, replay_path
    from vigil.stream.topics import ensure_topics

    _logging("warning")
    # kafka-python logs every reconnect and every dropped batch (hundreds of lines when the
    # broker goes away); the replay follows each delivery and reports failure itself.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    s = _settings()
    try:
        ensure_topics(s)
        stats = replay_path(s, path or sample_path(), speed=speed, limit=patients,
                            stagger_hours=stagger_hours, progress=progress)
    except ReplayError as exc:
        typer.echo(f"vigil replay: {exc}", err=True)
        raise typer.Exit(1) from None
    except KafkaError as exc:
        typer.echo(f"vigil replay: nothing was delivered: the topics could not be checked or "
                   f"created on {s.bootstrap_servers}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(stats.as_dict()))


@app.command()
def demo(
    data: Annotated[Path | None, typer.Option(help="PhysioNet folder or archive (default: the shipped sample).")] = None,
    patients: Annotated[int | None, typer.Option(help="Replay at most this many patients.")] = None,
    speed: Annotated[float, typer.Option(help="Event-time seconds per wall second; 0 = as fast as possible.")] = 3600.0,
    until_done: Annotated[bool, typer.Option("--until-done", help="Exit once every replayed record is processed and print a JSON summary.")] = False,
    workers: Annotated[int, typer.Option(help="faust workers in the consumer group.")] = 1,
    board: Annotated[bool, typer.Option(help="Serve the live alert board (VIGIL_BOARD_PORT).")] = True,
    via: Annotated[str, typer.Option(help="kafka: the replay writes Vigil's JSON to Kafka; hl7: it sends HL7 v2 ORU^R01 to an MLLP listener, as a monitor gateway.")] = "kafka",
) -> None:
    """Embedded broker + worker + replay of real ICU data, with alerts shown live (terminal
    and the alert board)."""
    from vigil.demo import run_demo

    _logging("warning")
    summary = run_demo(_settings(), data=data, limit=patients, speed=speed,
                       until_done=until_done, workers=workers, board=board, via=via)
    if summary is not None:
        typer.echo(json.dumps(summary))


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="The kind's data set, folder or .tar.gz (sepsis: PhysioNet 2019 set A; deterioration: PhysioNet 2012 set A).")],
    kind: Annotated[str, typer.Option(help="Alert kind to train: sepsis or deterioration.")] = "sepsis",
    out: Annotated[Path | None, typer.Option(help="Artifact directory to write (default: artifacts/<kind's artifact>).")] = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs (early stopping on validation).")] = 6,
    patients: Annotated[int | None, typer.Option(help="Use only the first N patients (quick runs).")] = None,
    seed: Annotated[int, typer.Option(help="Split and initialisation seed.")] = 42,
    comparators: Annotated[bool, typer.Option(help="Also train the classical ablation and LightGBM.")] = True,
) -> None:
    """Train a kind's hybrid quantum model, its comparators and its deployed stack; write a
    versioned artifact (the same data and seed give the same artifact, bit for bit)."""
    from vigil.evaluation.training import recipe, run_training
    from vigil.models.train import TrainConfig

    _logging("warning")
    try:
        training = recipe(kind)
        target = out or Path("artifacts") / training.artifact
        report = run_training(data, target, _settings(), kind=kind,
                              config=TrainConfig(epochs=epochs, seed=seed), limit=patients,
                              with_comparators=comparators)
    except (KeyError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    summary = {name: {k: m[k] for k in ("test_auroc", "test_auprc") if k in m}
               for name, m in report["models"].items()}
    typer.echo(json.dumps({"kind": kind, "artifact": report["artifact"], "models": summary,
                           "seconds": report["seconds"]}))


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option(help="PhysioNet 2019 and/or 2012 folder or .tar.gz.")],
    out: Annotated[Path, typer.Option(help="Where metrics.json and the PNG plots go.")] = Path("evaluation"),
    model: Annotated[Path | None, typer.Option(help="An artifact directory; it judges the kind it was trained for (default: the shipped ones).")] = None,
    patients: Annotated[int | None, typer.Option(help="Only the first N patients.")] = None,
    exclude_training: Annotated[bool, typer.Option(help="Leave out the artifact's training patients.")] = False,
) -> None:
    """Score every patient, causally: sepsis scorers on PhysioNet 2019 stays, deterioration
    scores on 2012 stays (against in-hospital death, a proxy); report and plot the results."""
    from vigil.evaluation.kinds import evaluate_kinds

    _logging("warning")
    try:
        summary = evaluate_kinds(data, out, _settings(), model=model, limit=patients,
                                 exclude_training=exclude_training)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(json.dumps(summary, default=float))


users_app = typer.Typer(help="Accounts and wall-screen sign-in links of the alert board "
                             "(VIGIL_BOARD_USERS_FILE).", no_args_is_help=True)
app.add_typer(users_app, name="users")


def _users_file():
    from vigil.board.users_file import UsersFile

    return UsersFile(_settings().board_users_path)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name, as acknowledgements record it.")],
    role: Annotated[str, typer.Option(help="nurse (reads and acknowledges) or viewer (reads).")],
    units: Annotated[str, typer.Option(help="Comma-separated units, or * for all units.")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")] = False,
    replace: Annotated[bool, typer.Option(help="Replace an existing account of that name.")] = False,
) -> None:
    """Add a board account (the password is stored as an argon2id hash)."""
    from vigil.board.auth import hash_password
    from vigil.board.users_file import UsersFileError

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    users = _users_file()
    try:
        users.add_account(name, role, units, hash_password(password), replace=replace)
    except (UsersFileError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"{name}: {role} on {units} (in {users.path})")


@users_app.command("list")
def users_list() -> None:
    """Accounts and tokens: names, roles and units (never a hash)."""
    from datetime import UTC, datetime

    users, now = _users_file(), datetime.now(UTC)
    for a in users.accounts():
        typer.echo(f"account  {a.name:24s} {a.role:7s} {','.join(sorted(a.units))}")
    for t in users.tokens():
        state = (f"used {t.used_at}" if t.used_at else
                 "expired" if t.expired(now) else f"unused, valid until {t.expires_at}")
        typer.echo(f"token    {t.name:24s} {t.role:7s} {','.join(sorted(t.units))}  "
                   f"[{t.token_id}] {state}")


@users_app.command("remove")
def users_remove(name: Annotated[str, typer.Argument(help="An account, or a token's name or id.")]) -> None:
    """Remove an account or token; its open board sessions end at their next request."""
    n = _users_file().remove(name)
    if not n:
        typer.echo(f"no account or token {name}", err=True)
        raise typer.Exit(1)
    typer.echo(f"removed {n} entr{'y' if n == 1 else 'ies'} named {name}")


@users_app.command("token")
def users_token(
    units: Annotated[str, typer.Option(help="Comma-separated units, or * for all units.")],
    role: Annotated[str, typer.Option(help="viewer for a wall screen; nurse needs --name.")] = "viewer",
    name: Annotated[str | None, typer.Option(help="Who the link signs in as (default screen-<id>).")] = None,
    valid_hours: Annotated[float, typer.Option(help="The link must be used within this long.")] = 24.0,
    base_url: Annotated[str | None, typer.Option(help="The board's address for the screen (default: the first VIGIL_BOARD_PUBLIC_URLS).")] = None,
) -> None:
    """Print a one-time sign-in link (a ward's wall screen); only its hash is stored."""
    from datetime import UTC, datetime, timedelta

    from vigil.board.users_file import UsersFileError

    if role == "nurse" and not name:
        raise typer.BadParameter("a nurse token acknowledges alerts: give it a --name")
    s = _settings()
    try:
        token = _users_file().add_token(name, role, units,
                                        datetime.now(UTC) + timedelta(hours=valid_hours))
    except UsersFileError as exc:
        raise typer.BadParameter(str(exc)) from exc
    host = "127.0.0.1" if s.board_host in ("0.0.0.0", "::") else s.board_host
    public = [u.strip() for u in s.board_public_urls.split(",") if u.strip()]
    base = (base_url or (public[0] if public else f"http://{host}:{s.board_port}")).rstrip("/")
    typer.echo(f"{base}/login#token={token}")
    typer.echo(f"one-time link for {role} on {units}, valid {valid_hours:g} h: open it on the "
               "screen; it is shown only now", err=True)


@app.command("hl7-listen")
def hl7_listen(host: Annotated[str | None, typer.Option(help="Interface (default VIGIL_HL7_HOST).")] = None,
               port: Annotated[int | None, typer.Option(help="MLLP port (default VIGIL_HL7_PORT, 2575).")] = None) -> None:
    """Receive HL7 v2 ORU^R01 (IHE PCD-01) over MLLP from monitor gateways into the vitals topic."""
    from vigil.gateways.cli import hl7_listen as run

    s = _settings()
    _logging(s.log_level)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    run(s, host=host, port=port)


@app.command("fhir-listen")
def fhir_listen(host: Annotated[str | None, typer.Option(help="Interface (default VIGIL_FHIR_HOST).")] = None,
                port: Annotated[int | None, typer.Option(help="HTTP port (default VIGIL_FHIR_PORT, 8090).")] = None) -> None:
    """Receive FHIR R4 vital-signs Observations (POST /fhir/Observation, batch Bundles on /fhir)."""
    from vigil.gateways.cli import fhir_listen as run

    s = _settings()
    _logging(s.log_level)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    run(s, host=host, port=port)


@app.command("hl7-send")
def hl7_send(
    path: Annotated[Path | None, typer.Argument(help="PhysioNet 2019/2012 folder or .tar.gz (default: the shipped sample).")] = None,
    host: Annotated[str | None, typer.Option(help="Listener host (default VIGIL_HL7_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Listener MLLP port (default VIGIL_HL7_PORT).")] = None,
    speed: Annotated[float, typer.Option(help="Event-time seconds per wall second; 0 = as fast as the ACKs come.")] = 0.0,
    patients: Annotated[int | None, typer.Option(help="Send at most this many patients.")] = None,
    labels: Annotated[bool, typer.Option(help="Also produce outcome labels to Kafka (for the online model).")] = False,
) -> None:
    """Replay PhysioNet stays as ORU^R01 messages over MLLP, as a monitor gateway would."""
    from vigil.gateways.cli import hl7_send as run

    _logging("warning")
    typer.echo(json.dumps(run(_settings(), path, host=host, port=port, speed=speed,
                              patients=patients, labels=labels)))


@app.command("settings")
def show_settings() -> None:
    """Print the resolved settings (secrets masked)."""
    typer.echo(json.dumps(_settings().masked(), indent=2, default=str))


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    app()
