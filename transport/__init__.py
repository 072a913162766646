# llmos.transport: remote nodes over ZeroMQ with msgpack, location-transparent refs.
#   _errors    SpawnRefused, PeerBusy (the rest of the tree lives in llmos.actors)
#   _frames    the versioned frame header, item op codes, Limits
#   _codec     msgpack + ext types (tuples, messages, refs), error envelopes, register_error
#   _security  CURVE key pairs, the bind policy, the ZAP allowlist decision
#   _peer      per-peer state, counters, NodeStats
#   _io        the I/O thread, the only one that uses the node's sockets (poll, wake-ups)
#   _router    the ROUTER socket: requests in, answers out (sent at once or queued)
#   _links     the I/O thread's dealer socket per peer: heartbeats, up/down, outbox flushing
#   _serve     requests from peers (ROUTER side); _client: answers from peers (DEALER side)
#   _ref       RemoteRef
#   _sending   queueing tells and requests to peers, back-pressure (mixed into Node)
#   _node      Node, the public entry point
#   _cli       node_main (``llmos node``)
# Imports point to llmos.actors only; kernel and agents import this package, never the reverse.
from llmos.transport._cli import node_main
from llmos.transport._codec import Codec, register_error
from llmos.transport._errors import PeerBusy, SpawnRefused
from llmos.transport._frames import Limits
from llmos.transport._node import Node, Spawner, default_spawner
from llmos.transport._peer import NodeStats
from llmos.transport._ref import RemoteRef
from llmos.transport._security import KeyPair, generate_keys, load_keys, load_public_keys

__all__ = [
    "Codec",
    "KeyPair",
    "Limits",
    "Node",
    "NodeStats",
    "PeerBusy",
    "RemoteRef",
    "SpawnRefused",
    "Spawner",
    "default_spawner",
    "generate_keys",
    "load_keys",
    "load_public_keys",
    "node_main",
    "register_error",
]
