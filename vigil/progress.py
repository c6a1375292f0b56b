"""One progress bar for Vigil's long commands (replay, feature tables, training).

A thin wrapper over rich's bar that does nothing when disabled (tests, ``--no-progress``),
so callers never branch on it.

>>> bar = ProgressBar("replay", total=10, enabled=False)
>>> bar.advance(3); bar.update(completed=10); bar.print("done"); bar.stop()
"""

from __future__ import annotations

from typing import Any

__all__ = ["ProgressBar"]


class ProgressBar:
    def __init__(self, description: str, total: int | None = None, *,
                 enabled: bool = True) -> None:
        self._p: Any = None
        self._task: Any = None
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._p = Progress("[bold]{task.description}", BarColumn(), MofNCompleteColumn(),
                           TimeRemainingColumn(), transient=False)
        self._p.start()
        self._task = self._p.add_task(description, total=total)

    def advance(self, n: float = 1) -> None:
        if self._p is not None:
            self._p.update(self._task, advance=n)

    def update(self, *, completed: float | None = None, total: float | None = None,
               description: str | None = None) -> None:
        if self._p is not None:
            self._p.update(self._task, completed=completed, total=total,
                           description=description)

    def print(self, text: str) -> None:
        """A line above the bar (the bar keeps its place)."""
        if self._p is not None:
            self._p.console.print(text)

    def stop(self) -> None:
        if self._p is not None:
            self._p.stop()
            self._p = None
