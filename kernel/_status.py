"""What ``llmos status`` asks a node's kernel: one row per actor running in that process."""

from __future__ import annotations

from typing import Any

from llmos.actors import message, running

__all__ = ["NodeStatus", "status_rows"]


@message("llmos.kernel.NodeStatus")
class NodeStatus:
    """Ask a kernel for a table of the actors of its node (answered with ``status_rows()``)."""


def status_rows() -> list[dict[str, Any]]:
    """One plain-data row per live actor of this process, sorted by name.

    Each row has: name, class, state, mailbox (depth), in_flight, processed, failed, restarts,
    busy (seconds), load (mailbox depth + in flight).
    """
    rows = []
    for ref in running():
        stats = ref.statistics()
        rows.append(
            {
                "name": stats.name,
                "class": stats.class_name,
                "state": stats.state,
                "mailbox": stats.mailbox_depth,
                "in_flight": stats.in_flight,
                "processed": stats.processed,
                "failed": stats.failed,
                "restarts": stats.restarts,
                "busy": round(stats.busy_seconds, 6),
                "load": stats.load,
            }
        )
    return sorted(rows, key=lambda row: str(row["name"]))
