"""Node addresses: which strings name a node, and the address a node gives out for itself."""

from __future__ import annotations

import socket

from llmos.transport._errors import TransportError

__all__ = ["advertised", "check_endpoint"]


def check_endpoint(address: str) -> None:
    """Raise :class:`~llmos.transport.TransportError` unless ``address`` names a node."""
    scheme, sep, rest = address.partition("://")
    if not sep or scheme not in ("tcp", "ipc", "inproc") or not rest:
        raise TransportError(
            f"{address!r} is not a node address; use tcp://host:port, ipc://path or "
            "inproc://name (as printed by the node)"
        )


def advertised(bound: str) -> str:
    """The address put in refs that leave a node bound at ``bound``: a wildcard host is
    replaced by this machine's host name."""
    scheme, _, rest = bound.partition("://")
    if scheme != "tcp":
        return bound
    host, _, port = rest.rpartition(":")
    if host in ("0.0.0.0", "*", "[::]", "::"):
        return f"tcp://{socket.gethostname()}:{port}"
    return bound
