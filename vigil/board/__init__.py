"""The live alert board: a small web service for the ward screen.

It reads ``vigil.alerts`` and ``vigil.acks`` from the beginning (no consumer group, no state of
its own), shows the active alerts newest and most severe first with their explanations and
risk trend, updates open pages by Server-Sent Events, and turns a click on *Acknowledge* into
an :class:`~vigil.stream.records.AckEvent` on the acks topic, which the worker acts on.

``state`` reduces records (pure), ``view`` shapes them for the page, ``feed`` reads Kafka,
``acks`` validates and produces acks, ``live`` pushes changes, ``service`` runs the parts
together and ``web`` routes HTTP to them; ``static/`` is the page itself.
"""

from vigil.board.service import Board, run_board
from vigil.board.state import BoardAlert, BoardState

__all__ = ["Board", "BoardAlert", "BoardState", "run_board"]
