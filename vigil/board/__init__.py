"""The live alert board: a small web service for the ward screen.

It reads ``vigil.alerts`` and ``vigil.acks`` from the beginning (no consumer group, no state of
its own), shows the active alerts newest and most severe first with their explanations and
risk trend, updates open pages by Server-Sent Events, and turns a click on *Acknowledge* into
an :class:`~vigil.wire.records.AckEvent` on the acks topic, which the worker acts on.

``state`` reduces records (pure), ``view`` shapes them for the page, ``feed`` reads Kafka,
``acks`` validates and produces acks, ``live`` pushes changes, ``service`` runs the parts
together and ``web`` routes HTTP to them; ``static/`` is the page itself.

Nobody reads or acknowledges without signing in (docs/security.md): ``roles`` says what an
identity may see and do, ``users_file`` keeps accounts and wall-screen tokens, ``auth``
checks passwords (argon2id) and tokens, ``sessions`` holds server-side sessions, ``proxy``
takes single sign-on from a trusted reverse proxy, ``limits`` bounds sign-in attempts and
event streams, ``guard`` applies all of it to every request, ``metrics`` counts refusals and
``client`` is a small signed-in client (the demo's).
"""

from vigil.board.service import Board
from vigil.board.state import BoardAlert, BoardState
from vigil.board.web import run_board

__all__ = ["Board", "BoardAlert", "BoardState", "run_board"]
