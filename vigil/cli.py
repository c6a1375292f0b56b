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
    return VigilSettings()


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
    """Stream recorded ICU data into the vitals topic in event-time order (labels too)."""
    from vigil.sample import sample_path
    from vigil.stream.replay.replayer import replay_path
    from vigil.stream.topics import ensure_topics

    _logging("warning")
    s = _settings()
    ensure_topics(s)
    stats = replay_path(s, path or sample_path(), speed=speed, limit=patients,
                        stagger_hours=stagger_hours, progress=progress)
    typer.echo(json.dumps(stats.as_dict()))


@app.command()
def demo(
    data: Annotated[Path | None, typer.Option(help="PhysioNet folder or archive (default: the shipped sample).")] = None,
    patients: Annotated[int | None, typer.Option(help="Replay at most this many patients.")] = None,
    speed: Annotated[float, typer.Option(help="Event-time seconds per wall second; 0 = as fast as possible.")] = 3600.0,
    until_done: Annotated[bool, typer.Option("--until-done", help="Exit once every replayed record is processed and print a JSON summary.")] = False,
    workers: Annotated[int, typer.Option(help="faust workers in the consumer group.")] = 1,
    board: Annotated[bool, typer.Option(help="Serve the live alert board (VIGIL_BOARD_PORT).")] = True,
) -> None:
    """Embedded broker + worker + replay of real ICU data, with alerts shown live (terminal
    and the alert board)."""
    from vigil.demo import run_demo

    _logging("warning")
    summary = run_demo(_settings(), data=data, limit=patients, speed=speed,
                       until_done=until_done, workers=workers, board=board)
    if summary is not None:
        typer.echo(json.dumps(summary))


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="PhysioNet 2019 folder or .tar.gz (training set A).")],
    out: Annotated[Path, typer.Option(help="Artifact directory to write.")] = Path("artifacts/sepsis-hybrid-qnn"),
    epochs: Annotated[int, typer.Option(help="Maximum epochs (early stopping on validation utility).")] = 6,
    patients: Annotated[int | None, typer.Option(help="Use only the first N patients (quick runs).")] = None,
    seed: Annotated[int, typer.Option(help="Split and initialisation seed.")] = 42,
    comparators: Annotated[bool, typer.Option(help="Also train the classical ablation and LightGBM.")] = True,
) -> None:
    """Train the hybrid quantum sepsis model (and its comparators); write a versioned artifact."""
    from vigil.evaluation.training import run_training
    from vigil.models.train import TrainConfig

    _logging("warning")
    report = run_training(data, out, _settings(), config=TrainConfig(epochs=epochs, seed=seed),
                          limit=patients, with_comparators=comparators)
    summary = {name: {k: m[k] for k in ("test_auroc", "test_auprc") if k in m}
               for name, m in report["models"].items()}
    typer.echo(json.dumps({"artifact": report["artifact"], "models": summary,
                           "seconds": report["seconds"]}))


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option(help="PhysioNet 2019 and/or 2012 folder or .tar.gz.")],
    out: Annotated[Path, typer.Option(help="Where metrics.json and the PNG plots go.")] = Path("evaluation"),
    model: Annotated[Path | None, typer.Option(help="Sepsis artifact directory (default: the shipped one).")] = None,
    patients: Annotated[int | None, typer.Option(help="Only the first N patients.")] = None,
    exclude_training: Annotated[bool, typer.Option(help="Leave out the artifact's training patients.")] = False,
) -> None:
    """Score every patient, causally: sepsis scorers on PhysioNet 2019 stays, deterioration
    scores on 2012 stays (against in-hospital death, a proxy); report and plot the results."""
    from vigil.evaluation.run import evaluate_deterioration, evaluate_sepsis
    from vigil.stream.app import shipped_model
    from vigil.stream.replay.sources import list_files

    _logging("warning")
    names = list_files(data)
    has_2019 = any(n.endswith(".psv") for n in names)
    has_2012 = any(n.endswith(".txt") and "utcomes" not in n for n in names)
    if not (has_2019 or has_2012):
        raise typer.BadParameter(f"no PhysioNet 2019 (.psv) or 2012 (.txt) records in {data}")
    both = has_2019 and has_2012
    summary: dict = {}
    if has_2019:
        r = evaluate_sepsis(data, out / "sepsis" if both else out, _settings(),
                            model or shipped_model(), limit=patients,
                            exclude_training=exclude_training)
        summary["sepsis"] = {k: r[k] for k in ("deployed", "patients", "scorers", "seconds")}
    if has_2012:
        r = evaluate_deterioration(data, out / "deterioration" if both else out, _settings(),
                                   limit=patients)
        summary["deterioration"] = {k: r[k] for k in ("deployed", "label", "patients",
                                                      "scorers", "seconds")}
    typer.echo(json.dumps(summary, default=float))


@app.command("settings")
def show_settings() -> None:
    """Print the resolved settings (secrets masked)."""
    typer.echo(json.dumps(_settings().masked(), indent=2, default=str))


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    app()
