# llmos.transport: remote nodes over ZeroMQ with msgpack, location-transparent refs.
#   _errors    TransportError and its subclasses (a branch of the tree drawn in llmos.actors);
#              what a caller may assume after each
#   _frames    the versioned frame header, item op codes, Limits
#   _codec     msgpack + ext types (tuples, messages, refs), error envelopes, register_error
#   _address   which strings are node addresses; the address a node gives out
#   _security  CURVE key pairs, the bind policy, whom a node trusts (Trust), the ZAP decision
#   _capabilities  what a peer may do here: spawn allowlist, stop policy, Quotas, accounts
#   _peer      per-peer state (life cycle, outbox, pending requests), counters, NodeStats
#   _sockets   socket options and constants shared by the ROUTER and the dealers
#   _io        IOLoop: the I/O thread, its poller, wake-up and calls; knows no peer or frame
#   _router    Router: the ROUTER (and ZAP) socket: requests in, answers out
#   _links     Links: a DEALER per peer: heartbeats, up/down, reaping, outbox flushing
#   _asker     whether an asker on another node may have given up: Hearing, RemoteAsker
#   _serve     frames from peers (ROUTER side): parse, check, admit, reject
#   _delivery  admitted tells and asks into local mailboxes, their answers back out
#   _client    answers from peers (DEALER side)
#   _control   requests on the node itself: spawn, stop, watch, lookup, statistics; the
#              spawn workers and default_spawner
#   _sending   Outbound: queueing tells and requests to peers, back-pressure (refs use it)
#   _ref       RemoteRef
#   _node      Node, the public entry point: builds the parts above and passes each what it uses
# Within the package: wire (_frames, _codec, _address) -> security (_security, _capabilities)
# -> peers (_peer) -> the I/O loop (_io) -> its parts (_router, _links, _asker) -> inbound (_serve,
# _delivery, _control, _client) and outbound (_sending, _ref) -> _node.
#
# One rule per socket: the I/O thread creates, reads, writes and closes every socket (the
# ROUTER, the ZAP socket, each peer's DEALER and its monitor). Every other thread (actors,
# askers, asyncio loops) only queues work (Links.post, Router.post_reply, IOLoop.call) and
# waits on a Reply that the I/O thread settles.
# Imports point to llmos.actors only; kernel and agents import this package, never the reverse.
#
# What a peer may do to a node (the remote capability model; _capabilities has the details):
# address actors by name with tells and asks, but never with a local-only message (refused at
# decode); stop only the actors it spawned (Node(remote_stop=...)), never a system actor
# (actor_system); spawn only classes on the allowlist ("pkg.mod:Class" exactly, or "pkg.mod:*"
# for classes defined in pkg.mod); hold at most its Quotas (spawned actors, pending requests,
# notices per interval). A ref in a message never makes a node connect past Quotas.max_peers.
# Every refusal is typed and counted (NodeStats), logs about a peer are rate-limited, and a
# request whose asker gave up is not started (see _errors for what each error means).
from llmos.transport._capabilities import Quotas
from llmos.transport._codec import Codec, register_error
from llmos.transport._control import Spawner, default_spawner
from llmos.transport._errors import (
    AuthError,
    FrameError,
    NodeUnreachable,
    NotAllowed,
    PeerBusy,
    QuotaExceeded,
    RemoteError,
    RequestExpired,
    SpawnFailed,
    SpawnRefused,
    TransportError,
)
from llmos.transport._frames import Limits
from llmos.transport._node import Node
from llmos.transport._peer import NodeStats
from llmos.transport._ref import RemoteRef
from llmos.transport._security import KeyPair, generate_keys, load_keys, load_public_keys

__all__ = [
    "AuthError",
    "Codec",
    "FrameError",
    "KeyPair",
    "Limits",
    "Node",
    "NodeStats",
    "NodeUnreachable",
    "NotAllowed",
    "PeerBusy",
    "QuotaExceeded",
    "Quotas",
    "RemoteError",
    "RemoteRef",
    "RequestExpired",
    "SpawnFailed",
    "SpawnRefused",
    "Spawner",
    "TransportError",
    "default_spawner",
    "generate_keys",
    "load_keys",
    "load_public_keys",
    "register_error",
]
