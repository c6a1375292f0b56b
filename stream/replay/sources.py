"""Finds PhysioNet stays in a folder or a ``.tar.gz`` archive, whichever the user has.

The format is recognised per file: ``*.psv`` is PhysioNet 2019; a ``*.txt`` whose first line
is ``Time,Parameter,Value`` is a PhysioNet 2012 record, with deaths from an
``Outcomes*.txt`` found in the same source.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

from vigil.stream.replay.physionet2012 import parse_outcomes, parse_record
from vigil.stream.replay.physionet2019 import parse_psv
from vigil.stream.replay.stays import Stay

__all__ = ["iter_stays", "load_stays", "list_files"]


def _is_archive(path: Path) -> bool:
    return path.is_file() and (path.name.endswith((".tar.gz", ".tgz", ".tar")))


def list_files(path: Path) -> list[str]:
    """Relative names of the candidate data files in ``path`` (folder or archive), sorted."""
    if _is_archive(path):
        with tarfile.open(path) as tar:
            names = [m.name for m in tar.getmembers() if m.isfile()]
    elif path.is_dir():
        names = [str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()]
    elif path.is_file():
        return [path.name]
    else:
        raise FileNotFoundError(f"no data at {path}")
    return sorted(n for n in names if n.endswith((".psv", ".txt")) and "/." not in f"/{n}")


def _read_all(path: Path, names: list[str]) -> dict[str, str]:
    """Contents of ``names``; an archive is read in one sequential pass (a gzip stream
    cannot seek backwards cheaply, so member-by-member access in sorted order is quadratic)."""
    if _is_archive(path):
        wanted = set(names)
        out: dict[str, str] = {}
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    f = tar.extractfile(member)
                    assert f is not None
                    out[member.name] = f.read().decode("utf-8")
        return out
    base = path if path.is_dir() else path.parent
    return {n: (base / n).read_text("utf-8") for n in names}


def _stem(name: str) -> str:
    return name.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def iter_stays(path: Path, limit: int | None = None) -> Iterator[Stay]:
    """Stays in ``path`` in (data set, id) order, at most ``limit`` of them."""
    path = Path(path)
    names = list_files(path)
    outcome_files = [n for n in names if _stem(n).lower().startswith("outcomes")]
    psv = [n for n in names if n.endswith(".psv")]
    txt = [n for n in names if n.endswith(".txt") and n not in outcome_files]
    chosen = (psv + txt)[:limit] if limit is not None else psv + txt
    texts = _read_all(path, outcome_files + chosen)
    outcomes: dict[str, int] = {}
    for n in outcome_files:
        outcomes.update(parse_outcomes(texts[n]))
    for n in chosen:
        text = texts.pop(n)
        if n.endswith(".psv"):
            yield parse_psv(_stem(n), text)
        elif text.startswith("Time,Parameter,Value"):
            sid = _stem(n)
            yield parse_record(sid, text, outcomes.get(sid))


def load_stays(path: Path, limit: int | None = None) -> list[Stay]:
    return list(iter_stays(path, limit))
