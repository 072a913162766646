"""Node: one process's ZeroMQ endpoint, its peers, and location-transparent refs.

Example::

    with Node() as node:                       # binds tcp://127.0.0.1:<free port>
        print(node.address)
        calc = node.ref("calc@tcp://127.0.0.1:5555")
        print(calc.ask(Add(2, 3), timeout=2).get())
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import zmq

from llmos.actors import ActorRef, LlmosError, find, get
from llmos.actors.lowlevel import check_message, check_timeout
from llmos.transport._address import advertised, check_endpoint
from llmos.transport._capabilities import Capabilities, Quotas
from llmos.transport._client import Client
from llmos.transport._codec import Codec
from llmos.transport._control import Control, Spawner, SpawnWorkers, default_spawner
from llmos.transport._delivery import Delivery
from llmos.transport._errors import NodeUnreachable
from llmos.transport._frames import SPAWN, Limits
from llmos.transport._io import IOLoop
from llmos.transport._links import Links
from llmos.transport._peer import DOWN, Counters, NodeStats, Peer, node_stats
from llmos.transport._ref import RemoteRef
from llmos.transport._router import Router
from llmos.transport._security import KeyPair, Trust, check_bind, load_keys
from llmos.transport._sending import Outbound
from llmos.transport._serve import Server

__all__ = ["Node"]

log = logging.getLogger("llmos.transport")
_monotonic = time.monotonic
_numbers = itertools.count(1)


class Node:
    """One process's endpoint: a ROUTER socket, connections to peers, and remote refs.

    One I/O thread creates, reads, writes and closes every socket; other threads hand it work
    through queues and it settles their replies (see :mod:`llmos.transport._io`).

    Args:
        bind: where to listen. Default ``tcp://127.0.0.1:0`` (a free loopback port; read the
            chosen one from :attr:`address`). Binding anything but loopback, ``ipc://`` or
            ``inproc://`` needs ``keys`` unless ``insecure`` is set.
        name: a name for logs and the I/O thread (default ``node-<pid>-<n>``).
        keys: this node's CURVE key pair (a :class:`KeyPair`, a ``.key_secret`` file, or a
            folder holding one). With keys the node only accepts CURVE clients whose public
            key is in ``allow_keys`` (its own key is always allowed).
        allow_keys: public keys of the clients allowed in: Z85 strings, ``.key`` files, or
            folders of them.
        peer_keys: the public (server) key of each peer address this node connects to over
            CURVE. Peers without an entry are reached without CURVE. A node that holds refs
            to actors here connects back to this node to use them (replies go back on the
            connection they came in on, but tells and asks to a ref always go to the ref's
            own node), so with CURVE both nodes need each other's public keys.
        default_peer_key: the CURVE server key of every peer address with no entry in
            ``peer_keys`` (a cluster whose nodes share one key pair: each node reaches any
            other over CURVE without being told its address first). Default None: such peers
            are reached without CURVE.
        allow_spawn: import paths peers may spawn here: ``"pkg.mod:Class"`` (exactly that) or
            ``"pkg.mod:*"`` (a class defined in ``pkg.mod``, named without dots).
        remote_stop: which actors a peer may stop here: ``"spawned"`` (only those it spawned
            itself, the default), ``"any"`` or ``"none"``. System actors (``actor_system``)
            are never stopped from the wire. See :mod:`llmos.transport` for what a peer may do.
        quotas: per-peer bounds (see :class:`Quotas`).
        insecure: allow binding off loopback without keys (logged as a warning).
        heartbeat: seconds without an answer after which a peer is marked down.
        advertise: the address put in refs that leave this node (default: the bound one, with
            a wildcard host replaced by this machine's host name).
        limits: size bounds for frames (see :class:`Limits`).
        max_outbox: most items queued to one peer before senders wait (back-pressure); they
            also wait while 2 MiB of payloads of 4 KiB or more are queued to it.
        send_timeout: how long a sender waits for room before :class:`PeerBusy`.
        clock_skew: seconds of wall-clock difference tolerated between nodes when judging
            whether a request's deadline has passed (requests carry their deadline as wall
            clock time, so a request delayed in transit, or by a frozen node, is not run once
            its asker has given up). Raise it for nodes whose clocks are not kept in sync. A
            silent peer's pending requests fail with NodeUnreachable twice this long after it
            is marked down, when none of them can start there any more.
        spawner: how remote spawn requests start actors (a kernel plugs in here).
        context: the ZeroMQ context (default: the shared one; a private one with keys).

    Raises:
        AuthError: binding off loopback without keys or ``insecure``, or unreadable keys.
        TransportError: the address cannot be bound.
    """

    def __init__(
        self,
        bind: str = "tcp://127.0.0.1:0",
        *,
        name: str | None = None,
        keys: KeyPair | str | os.PathLike[str] | None = None,
        allow_keys: Iterable[str | bytes | os.PathLike[str]] = (),
        peer_keys: Mapping[str, str | bytes] | None = None,
        default_peer_key: str | bytes | None = None,
        allow_spawn: Iterable[str] = (),
        remote_stop: str = "spawned",
        quotas: Quotas | None = None,
        insecure: bool = False,
        heartbeat: float = 3.0,
        advertise: str | None = None,
        limits: Limits | None = None,
        max_outbox: int = 65_536,
        send_timeout: float = 5.0,
        clock_skew: float = 0.25,
        spawner: Spawner | None = None,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        check_endpoint(bind)
        self.heartbeat = check_timeout(heartbeat)
        self.send_timeout = check_timeout(send_timeout)
        if not isinstance(max_outbox, int) or max_outbox < 1:
            raise LlmosError(f"max_outbox must be a positive int, got {max_outbox!r}")
        if not math.isfinite(clock_skew) or clock_skew < 0:
            raise LlmosError(f"clock_skew must be >= 0 seconds, got {clock_skew!r}")
        self.keys = load_keys(keys) if keys is not None else None
        check_bind(bind, self.keys, insecure)
        self.trust = Trust(self.keys, allow_keys, peer_keys or {}, default_peer_key)
        self.capabilities = Capabilities(allow_spawn, remote_stop)
        if quotas is not None and not isinstance(quotas, Quotas):
            raise LlmosError(f"quotas must be a Quotas, got {quotas!r}")
        self.quotas = quotas or Quotas()
        self.bind = bind
        self.name = name or f"node-{os.getpid()}-{next(_numbers)}"
        self.limits = limits or Limits()
        self.max_payload = self.limits.max_frame - 256
        self.max_outbox = max_outbox
        self.clock_skew = float(clock_skew)
        self.close_linger = 0.1
        self.spawner: Spawner = spawner or default_spawner
        self._own_context = context is None and self.keys is not None
        if context is None:
            context = zmq.Context() if self.keys is not None else zmq.Context.instance()
        self.context: zmq.Context[Any] = context
        self.address = ""
        self.peers: dict[str, Peer] = {}
        self.counters = Counters()
        self._peers_lock = threading.Lock()
        self.spawn_workers = SpawnWorkers(self.name)
        self._closed = False
        self.codec = Codec("", self._bind_ref, self.limits)
        self.io = IOLoop(self.name, max(0.02, self.heartbeat / 4))
        self.router = Router(
            self.io,
            self.context,
            bind,
            keys=self.keys,
            zap=self.trust.zap_handler,
            limits=self.limits,
            counters=self.counters,
            quotas=self.quotas,
            heartbeat=self.heartbeat,
            send_timeout=self.send_timeout,
        )
        self.client = Client(
            codec=self.codec,
            limits=self.limits,
            counters=self.counters,
            peers=self.peers,
            remote_ref=self.remote_ref,
        )
        delivery = Delivery(
            codec=self.codec,
            counters=self.counters,
            router=self.router,
            peers=self.peers,
            max_payload=self.max_payload,
        )
        control = Control(
            delivery.answer,
            codec=self.codec,
            counters=self.counters,
            capabilities=self.capabilities,
            quotas=self.quotas,
            remote_ref=self.remote_ref,
            spawner=lambda: self.spawner,
            spawn_executor=self.spawn_workers.executor,
        )
        self.server = Server(
            codec=self.codec,
            limits=self.limits,
            counters=self.counters,
            quotas=self.quotas,
            router=self.router,
            delivery=delivery,
            control=control,
            clock_skew=self.clock_skew,
            pulse=self.io.pulse,
        )
        self.links = Links(
            self.io,
            self.context,
            self.peers,
            self._peers_lock,
            self.client,
            keys=self.keys,
            limits=self.limits,
            counters=self.counters,
            quotas=self.quotas,
            heartbeat=self.heartbeat,
            clock_skew=self.clock_skew,
            max_outbox=self.max_outbox,
        )
        self.outbound = Outbound(
            self.name,
            self.peers,
            self._peers_lock,
            self.trust,
            codec=self.codec,
            links=self.links,
            io=self.io,
            client=self.client,
            quotas=self.quotas,
            counters=self.counters,
            max_payload=self.max_payload,
            max_outbox=self.max_outbox,
            send_timeout=self.send_timeout,
            heartbeat=self.heartbeat,
        )
        self.router.serve = self.server.on_frame
        try:
            self.io.start(self.router.open, self._close_sockets)
            bound = self.router.address
        except BaseException:
            if self._own_context:
                self.context.term()
            raise
        self.address = advertise or advertised(bound)
        self.codec.local_address = self.address
        if self.keys is not None:
            self.trust.peer_keys.setdefault(self.address, self.keys.public)
        log.info("node %s listening on %s", self.name, self.address)

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.address}{' closed' if self._closed else ''}>"

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- public API -----------------------------------------------------------------------

    def ref(self, address: str) -> ActorRef:
        """The ref for ``"name@node-address"`` (no network round trip).

        A bare name, or this node's own address, gives the local actor's ref. Node
        addresses are compared as strings: use the address the node printed (its
        :attr:`address`), not another spelling of it.

        Raises:
            ActorDeadError: a local name with no live actor. TransportError: a bad address.
        """
        name, sep, node = address.partition("@")
        if not sep or node == self.address:
            return get(name)
        check_endpoint(node)
        return self.remote_ref(name, node)

    def lookup(self, name: str, node: str | None = None, timeout: float | None = None) -> ActorRef:
        """Ask a node whether an actor runs there and return its ref.

        Args:
            name: the actor's name, or ``"name@node-address"``.
            node: the node's address (when ``name`` has none).
            timeout: seconds to wait for the answer.

        Raises:
            ActorDeadError: no such actor runs there. NodeUnreachable: the node is down.
            AskTimeout: no answer in time.
        """
        if node is None:
            name, _, node = name.partition("@")
        if not node or node == self.address:
            return get(name)
        return self.outbound.lookup(name, node, timeout)

    def spawn_remote(
        self,
        node: str,
        path: str,
        *args: Any,
        name: str | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> ActorRef:
        """Have another node start an actor class named by import path; return its ref.

        The other node must list ``path`` (or ``"pkg.mod:*"``) in ``allow_spawn``; its
        spawner (its kernel, when one runs) starts and supervises the actor there.

        Args:
            node: the other node's address.
            path: ``"pkg.mod:Class"``.
            *args: constructor arguments (message data).
            name: the new actor's name there.
            timeout: seconds to wait for the answer.
            **kwargs: constructor keyword arguments (message data).

        Raises:
            SpawnRefused: the path is not allowed there. NodeUnreachable: the node is down.
            Exception: what importing or constructing raised there (e.g. NameTaken).
        """
        check_message([args, kwargs, name])
        ref: ActorRef = self.outbound.request(
            node, SPAWN, path, [tuple(args), kwargs, name], timeout
        )
        return ref

    def connect(self, node: str, timeout: float | None = None) -> None:
        """Connect to a peer now and wait until it answers a heartbeat.

        Not needed before using refs (they connect on first use); useful to wait for a peer.

        Raises:
            NodeUnreachable or AuthError: it did not answer within ``timeout`` (default: the
                heartbeat timeout plus one second).
        """
        peer = self.outbound.peer(node)
        wait = check_timeout(timeout) if timeout is not None else self.heartbeat + 1.0
        if not peer.up_event.wait(wait):
            if peer.state == DOWN:
                raise peer.down_error()
            raise NodeUnreachable(f"node {node} did not answer within {wait:.3g} s")

    def peer_state(self, node: str) -> str | None:
        """``"connecting"``, ``"up"``, ``"down"``, or None for an address never used."""
        peer = self.peers.get(node)
        return None if peer is None else peer.state

    def add_peer_key(self, node: str, public_key: str | bytes) -> None:
        """Trust ``public_key`` as the CURVE server key of the peer at ``node``."""
        self.trust.add_peer_key(node, public_key)

    def statistics(self) -> NodeStats:
        """A snapshot of this node's transport counters."""
        heard = _monotonic() - self.heartbeat
        clients = [a.last_seen >= heard for a in list(self.server.accounts.values())]
        peers = list(self.peers.values())
        zap = self.trust.zap_handler
        return node_stats(self.address, self.name, self.counters, peers, zap, clients)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the I/O thread and close every socket (bounded: linger is at most 0.1 s).

        Pending requests to peers fail with NodeUnreachable; local actors keep running.
        """
        if self._closed:
            return
        self._closed = True
        self.outbound.closed = True
        self.io.stop(timeout)
        self.spawn_workers.shutdown()
        if self._own_context and not self.io.thread.is_alive():
            self.context.term()  # bounded: every socket was closed with a linger <= 0.1 s
        log.info("node %s closed", self.name)

    def remote_ref(self, name: str, node: str) -> RemoteRef:
        """A ref to ``name`` on the node at ``node``, carried by this node."""
        return RemoteRef(name, node, self.outbound)

    def _bind_ref(self, name: str, node: str) -> ActorRef:
        """The ref for one found on the wire: the local ref when it names this node."""
        if node == self.address:
            local = find(name)
            if local is not None:
                return local
        return self.remote_ref(name, node)

    def _close_sockets(self) -> None:
        """The I/O thread's last act: answers queued go out, what waits on peers fails, and
        every socket closes (linger at most ``close_linger``)."""
        linger_ms = max(0, int(self.close_linger * 1000))
        self.router.close(linger_ms)  # sends the answers still queued first
        self.client.fail_all(f"node {self.name} was closed")
        self.links.close_all(linger_ms)
