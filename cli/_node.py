"""``llmos node``: a node whose kernel supervises what remote peers spawn on it."""

from __future__ import annotations

__all__ = ["run_node"]


def run_node(argv: list[str]) -> int:
    """Run ``llmos node`` (see ``llmos node --help``); returns the exit code.

    The node's kernel starts first: it supervises every actor that peers spawn here (by import
    path, from the ``--allow-spawn`` list), and answers ``llmos status``.
    """
    from llmos.kernel import kernel
    from llmos.transport import node_main

    return node_main(argv, spawner=kernel().spawner)
