"""``llmos status ADDRESS``: a table of a running node's actors, read from its kernel."""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["fetch_status", "format_table", "print_status"]

COLUMNS = (
    ("name", "NAME"),
    ("class", "CLASS"),
    ("state", "STATE"),
    ("mailbox", "MAILBOX"),
    ("processed", "PROCESSED"),
    ("failed", "FAILURES"),
    ("restarts", "RESTARTS"),
    ("load", "LOAD"),
)


def fetch_status(
    address: str,
    timeout: float = 5.0,
    keys: str | None = None,
    server_key: str | None = None,
) -> list[dict[str, Any]]:
    """Ask the kernel of the node at ``address`` for its actors (one dict per actor).

    Raises:
        NodeUnreachable: the node did not answer within ``timeout``. ActorDeadError: it runs
            no kernel.
    """
    from llmos.kernel import KERNEL_NAME, NodeStatus
    from llmos.transport import Node

    node = Node(
        keys=keys,
        peer_keys={address: server_key} if server_key else None,
        name="llmos-status",
        # The peer's heartbeat must not call it down before the asked timeout runs out: the
        # one answer is then "did not answer within TIMEOUT s".
        heartbeat=2 * timeout + 1,
    )
    try:
        node.connect(address, timeout=timeout)
        kernel = node.lookup(KERNEL_NAME, node=address, timeout=timeout)
        rows: list[dict[str, Any]] = kernel.ask(NodeStatus(), timeout=timeout).get()
        return rows
    finally:
        node.close()


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table (numbers right-aligned)."""
    cells = [[title for _, title in COLUMNS]]
    cells += [[str(row.get(key, "")) for key, _ in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    numeric = {"mailbox", "processed", "failed", "restarts", "load"}
    lines = []
    for line in cells:
        parts = [
            text.rjust(width) if key in numeric else text.ljust(width)
            for text, width, (key, _) in zip(line, widths, COLUMNS, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def print_status(
    address: str, timeout: float = 5.0, keys: str | None = None, server_key: str | None = None
) -> int:
    # The failure is reported once, as the command's error line; the transport's own log of
    # the same event would say it a second time.
    logging.getLogger("llmos").addHandler(logging.NullHandler())
    rows = fetch_status(address, timeout=timeout, keys=keys, server_key=server_key)
    print(f"{address}: {len(rows)} actors")
    print(format_table(rows))
    return 0
