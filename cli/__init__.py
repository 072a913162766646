# llmos.cli: the ``llmos`` command (console script ``llmos = llmos.cli:main``).
#   _main      the parser, ``main`` (one line per error, exit codes)
#   _demo      ``llmos demo`` and ``llmos chat``
#   _node      ``llmos node`` (a node whose kernel supervises what peers spawn)
#   _status    ``llmos status ADDRESS`` (a table of a node's actors)
# Imports point one way: cli -> agents -> models -> kernel -> transport -> actors. Each command
# imports what it needs when it runs, so ``llmos --help`` stays fast.
from __future__ import annotations

from ._main import build_parser, main

__all__ = ["build_parser", "main"]
