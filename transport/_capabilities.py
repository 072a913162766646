"""What a peer may do to this node: the remote capability model, as plain policy (no sockets).

A node serves peers, it does not obey them. Here "a peer" is one connection to the node's
ROUTER socket (its ZeroMQ routing id); a peer may:

- **address** any actor by name with tells and asks, but never with a *local-only* message
  (``@message(..., local_only=True)``: the kernel's and the pools' internal messages), which
  is refused when its payload is decoded (:class:`NotAllowed`, counted as a bad item);
- **stop** only the actors it spawned itself (``remote_stop="spawned"``, the default), any
  actor (``"any"``), or none (``"none"``); never a *system actor* (a class that sets
  ``actor_system = True``: the kernel, supervisors and pools), whatever the setting;
- **spawn** a class only when its path is listed exactly (``"pkg.mod:Class"``) or covered by a
  wildcard (``"pkg.mod:*"``), which matches only a plain class name (no dots) whose class has
  ``__module__ == "pkg.mod"``: nothing is reached through another module's attributes;
- hold at most :class:`Quotas` of the node's resources at a time: actors it spawned, requests
  pending, bytes of answers queued for it, notices per interval. Past a quota a request is
  refused with :class:`QuotaExceeded` and counted; a notice is counted, not sent.

Every refusal and every bad input is counted per peer; the log says so at most once per peer
per ``Quotas.log_interval``, with the counts since the last line.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from llmos.actors import LlmosError
from llmos.transport._errors import NotAllowed, SpawnFailed, SpawnRefused

__all__ = ["STOP_POLICIES", "Account", "Capabilities", "Quotas", "is_system_actor"]

log = logging.getLogger("llmos.transport")
_monotonic = time.monotonic

STOP_POLICIES = ("spawned", "any", "none")


@dataclasses.dataclass(frozen=True, slots=True)
class Quotas:
    """Bounds on what one peer (or all of them) may hold on a node at a time.

    Attributes:
        max_spawned: live actors one peer may have spawned here.
        max_pending: requests of one peer in progress here (asks queued or running, spawns).
        max_watches: watches one peer may hold on actors here.
        max_queued_bytes: bytes of answers and notices queued here for one peer that does not
            read them; past it, further answers to that peer are dropped and counted.
        max_notices: notices (answers to bad frames and items) sent to one peer per
            ``log_interval``; the rest are counted, not sent.
        max_peers: peers this node holds connections to at a time. A ref that arrives in a
            message never makes the node connect past it (the send fails with
            ``QuotaExceeded`` and the tell goes to dead letters); idle peers are reaped first.
        peer_idle: seconds after which a peer with nothing pending, nothing watched and
            nothing queued is closed and forgotten (it reconnects when used again).
        log_interval: seconds between two log lines about one peer.
    """

    max_spawned: int = 256
    max_pending: int = 8192
    max_watches: int = 4096
    max_queued_bytes: int = 32 * 1024 * 1024
    max_notices: int = 64
    max_peers: int = 128
    peer_idle: float = 60.0
    log_interval: float = 5.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise LlmosError(f"Quotas.{field.name} must be a positive number, got {value!r}")


def is_system_actor(actor_class: type[Any] | None) -> bool:
    """True for an actor class that sets ``actor_system`` (no wire stop, ever)."""
    return bool(getattr(actor_class, "actor_system", False))


class Capabilities:
    """The spawn allowlist and the stop policy of one node.

    Args:
        allow_spawn: ``"pkg.mod:Class"`` (exact) or ``"pkg.mod:*"`` (classes of that module).
        remote_stop: ``"spawned"``, ``"any"`` or ``"none"``.

    Raises:
        LlmosError: a malformed allowlist entry or an unknown stop policy.
    """

    def __init__(self, allow_spawn: Iterable[str], remote_stop: str) -> None:
        self._exact: set[str] = set()
        self._modules: set[str] = set()
        for pattern in allow_spawn:
            module, sep, qual = pattern.partition(":") if isinstance(pattern, str) else ("", "", "")
            if not sep or not module or not qual:
                raise LlmosError(
                    f"allow_spawn entry {pattern!r} must be 'pkg.mod:Class' or 'pkg.mod:*'"
                )
            if qual == "*":
                self._modules.add(module)
            else:
                self._exact.add(pattern)
        if remote_stop not in STOP_POLICIES:
            raise LlmosError(
                f"remote_stop must be one of {', '.join(map(repr, STOP_POLICIES))}, "
                f"got {remote_stop!r}"
            )
        self.remote_stop = remote_stop

    def spawn_allowed(self, path: str) -> bool:
        """Whether ``path`` may be spawned at all (checked before anything is imported)."""
        module, sep, qual = path.partition(":")
        if not sep or not module or not qual:
            return False
        if path in self._exact:
            return True
        return module in self._modules and qual.isidentifier()

    def refusal(self, path: str, address: str) -> SpawnRefused:
        return SpawnRefused(
            f"node {address} does not allow spawning {path!r}; add it (or "
            f"'{path.partition(':')[0]}:*' for a class defined in that module) to allow_spawn "
            "on that node"
        )

    def resolve(self, path: str, address: str) -> type:
        """Import and return the class ``path`` names, if the allowlist covers it.

        Raises:
            SpawnRefused: not covered (a wildcard covers only a class defined in its module).
            ImportError, AttributeError: the module or class does not exist.
            SpawnFailed: the path names something other than a class.
        """
        if not self.spawn_allowed(path):
            raise self.refusal(path, address)
        module_name, _, qualname = path.partition(":")
        found: Any = importlib.import_module(module_name)
        if path in self._exact:
            for part in qualname.split("."):
                found = getattr(found, part)
        else:
            found = getattr(found, qualname)
            if not isinstance(found, type) or found.__module__ != module_name:
                raise self.refusal(path, address)
        if not isinstance(found, type):
            raise SpawnFailed(f"{path} is a {type(found).__name__}, not a class")
        return found

    def check_stop(
        self, name: str, actor_class: type[Any] | None, account: Account, address: str
    ) -> None:
        """Raise :class:`NotAllowed` unless the peer of ``account`` may stop actor ``name``
        (whose instance is of ``actor_class``, None while none runs)."""
        if is_system_actor(actor_class):
            raise NotAllowed(f"{name!r} is a system actor of node {address}; peers never stop it")
        if self.remote_stop == "any":
            return
        if self.remote_stop == "spawned" and name in account.spawned:
            return
        which = "no actor" if self.remote_stop == "none" else "only actors it spawned itself"
        raise NotAllowed(
            f"node {address} lets a peer stop {which}; {name!r} is not one of them (start that "
            "node with remote_stop='any' to allow it)"
        )


@dataclasses.dataclass(slots=True, eq=False)
class Account:
    """What one peer holds on this node, and what it was refused or sent that was bad.

    A peer is a CURVE key on a keyed node (every connection made with that key shares one
    account, so reconnecting or opening more connections gives no fresh quotas, and a peer that
    reconnects may still stop the actors it spawned), and one connection on a node without keys.

    Touched by the I/O thread and by the threads that complete its requests (counters only
    grow or shrink by one under the GIL; exactness is not needed for a quota).
    """

    label: str  # the peer in the log: its CURVE key, or its connection's identity in hex
    last_seen: float = 0.0  # when a frame of it last arrived (monotonic; see Server.on_frame)
    spawned: set[str] = dataclasses.field(default_factory=set)
    pending: int = 0
    watches: int = 0
    bad: int = 0
    refused: int = 0
    notices: int = 0
    notice_window: float = 0.0
    since_log: int = 0
    last_log: float = -1e9

    def allow_notice(self, quotas: Quotas, now: float) -> bool:
        if now - self.notice_window >= quotas.log_interval:
            self.notice_window = now
            self.notices = 0
        if self.notices >= quotas.max_notices:
            return False
        self.notices += 1
        return True

    def note(self, quotas: Quotas, node: str, text: str, bug: BaseException | None = None) -> None:
        """Log ``text`` about this peer, at most once per interval, with the counts (and the
        traceback of ``bug``, an error of this node's own, when there is one)."""
        self.since_log += 1
        now = _monotonic()
        if now - self.last_log < quotas.log_interval:
            return
        log.warning(
            "node %s: peer %s %s (%d such events since the last line; %d bad inputs and %d "
            "refusals in all from this peer)",
            node,
            self.label,
            text,
            self.since_log,
            self.bad,
            self.refused,
            exc_info=bug,
        )
        self.last_log = now
        self.since_log = 0
