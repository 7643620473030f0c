"""Board definitions and bitstream builds. Needs the ``build`` extra.

``BOARDS`` maps each ``--board`` name to its :class:`~qaccel.boards.base.Board` class; adding a
board is one small module with a ``Board`` subclass, registered here.
"""

from .base import Board, BuildConfig, LED_ROLES
from .icebreaker import ICEBreaker
from .ulx3s import ULX3S85F
from .xilinx import KCU105

__all__ = ["BOARDS", "DEFAULT_BOARD", "Board", "BuildConfig", "LED_ROLES", "get_board"]

BOARDS = {board.name: board for board in (ICEBreaker, ULX3S85F, KCU105)}

DEFAULT_BOARD = "icebreaker"


def get_board(name):
    """An instance of the board called ``name``; ValueError listing the known ones."""
    if not isinstance(name, str):
        raise TypeError(f"Board name must be a string, not {name!r}")
    try:
        return BOARDS[name]()
    except KeyError:
        raise ValueError(f"Unknown board {name!r}; known boards: {', '.join(BOARDS)}") from None
