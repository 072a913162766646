# llmos.cli: the ``llmos`` command (console script ``llmos = llmos.cli:main``) and the views of
# a running node.
#   _main       the parser, ``main`` (one line per error, exit codes)
#   _demo       ``llmos demo`` and ``llmos chat``
#   _node       ``llmos node`` (a node whose kernel supervises what peers spawn; --metrics)
#   _status     ``llmos status ADDRESS`` (a table of a node's actors)
#   _observe    node_snapshot, the Observer actor (llmos.observer), NodeWatcher (its client)
#   _metrics    Prometheus metrics read from the snapshot at each scrape (serve_metrics)
#   _top        ``llmos top ADDRESS`` (a live terminal view, rich)
#   _views      the ``top`` and ``dashboard`` subcommands (parsers; each imports its view)
#   _dashboard  ``llmos dashboard ADDRESS`` (a live web page, Starlette + server-sent events;
#               its page and plain JavaScript live in static/)
# Imports point one way: cli -> agents -> models -> kernel -> transport -> actors. Each command
# imports what it needs when it runs, so ``llmos --help`` stays fast; the other names load on
# first use.
from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING

from ._main import build_parser, main

if TYPE_CHECKING:
    from ._dashboard import Dashboard
    from ._metrics import MetricsServer, SnapshotCollector, serve_metrics
    from ._observe import OBSERVER_NAME, NodeSnapshot, NodeWatcher, Observer, node_snapshot

_LAZY = {
    "Dashboard": "._dashboard",
    "MetricsServer": "._metrics",
    "SnapshotCollector": "._metrics",
    "serve_metrics": "._metrics",
    "OBSERVER_NAME": "._observe",
    "NodeSnapshot": "._observe",
    "NodeWatcher": "._observe",
    "Observer": "._observe",
    "node_snapshot": "._observe",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llmos.cli' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


del TYPE_CHECKING  # keep the namespace to the public names

__all__ = [
    "OBSERVER_NAME",
    "Dashboard",
    "MetricsServer",
    "NodeSnapshot",
    "NodeWatcher",
    "Observer",
    "SnapshotCollector",
    "build_parser",
    "main",
    "node_snapshot",
    "serve_metrics",
]
