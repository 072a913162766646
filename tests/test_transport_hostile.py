"""Hostile peers against a real ``llmos node`` process over TCP (one test per finding of issue 13).

After every attack the node must be alive, its memory bounded, a well-behaved peer's ask answered
within a second, and SIGINT must still end it with exit code 0 within 15 seconds
(``transport_hostile.TargetNode``).
"""

from __future__ import annotations

import msgpack
import pytest
from transport_hostile import SPAWNABLE, answer_to, attacker, packb, target_node, tracebacks
from transport_support import ask_item, hostile_frames

from llmos.actors import MessageError
from llmos.kernel._pool import ScaleTick
from llmos.transport import Node, NotAllowed, SpawnRefused
from llmos.transport._codec import EXT_MESSAGE
from llmos.transport._frames import FAIL, REPLY, TELL, pack_frame

pytestmark = pytest.mark.multiprocess


def test_the_harness_sees_a_healthy_node_through_hostile_frames() -> None:
    with target_node() as node:
        node.check("start")
        with attacker(node.address) as sock:
            for label, frame, _kind in hostile_frames():
                if isinstance(frame, list):
                    sock.send_multipart(frame)
                else:
                    sock.send(frame)
                node.check(label)
            sock.send(pack_frame([ask_item(1, packb("x"))]))
            assert answer_to(sock, 1)[0] == REPLY
        log = node.finish()
    assert tracebacks(log) == 0, log


# -- findings 2, 4, 5: the capability model ---------------------------------------------


def test_finding_2_a_peer_stops_only_what_it_spawned_and_never_the_kernel() -> None:
    with target_node("--remote-stop", "spawned") as node, Node(heartbeat=1.0) as other:
        kernel = other.ref(f"llmos.kernel@{node.address}")
        with pytest.raises(NotAllowed, match="system actor"):
            kernel.stop(timeout=5)
        assert node.echo is not None
        theirs = other.ref(f"echo@{node.address}")
        with pytest.raises(NotAllowed, match="only actors it spawned"):
            theirs.stop(timeout=5)
        node.check("stops refused")
        assert node.good is not None
        mine = node.good.spawn_remote(node.address, SPAWNABLE, name="mine", timeout=5)
        assert mine.stop(timeout=5) is True  # what a peer spawned, it may stop
        node.check("its own stop")
        node.finish()


def test_finding_2_remote_stop_any_still_spares_system_actors() -> None:
    with target_node("--remote-stop", "any") as node, Node(heartbeat=1.0) as other:
        with pytest.raises(NotAllowed, match="system actor"):
            other.ref(f"llmos.kernel@{node.address}").stop(timeout=5)
        other.spawn_remote(node.address, SPAWNABLE, name="spare", timeout=5)
        assert node.good is not None
        assert node.good.ref(f"spare@{node.address}").stop(timeout=5) is True
        node.check()
        node.finish()


def test_finding_4_internal_messages_are_refused_at_decode() -> None:
    tick = msgpack.ExtType(EXT_MESSAGE, packb(["llmos.kernel.ScaleTick"]))
    with target_node() as node:
        with attacker(node.address) as sock:
            sock.send(
                pack_frame(
                    [[TELL, "llmos.kernel", packb(tick)] for _ in range(200)]
                    + [ask_item(1, packb(tick), target="llmos.kernel"), ask_item(2, packb("ok"))]
                )
            )
            failed = answer_to(sock, 1)
            assert failed[0] == FAIL and msgpack.unpackb(failed[2])[0].endswith("NotAllowed")
            assert answer_to(sock, 2)[0] == REPLY
        with pytest.raises(MessageError, match="local-only"):
            assert node.good is not None
            node.good.ref(f"llmos.kernel@{node.address}").tell(ScaleTick())
        node.check("200 spoofed ScaleTicks")
        log = node.finish()
    assert tracebacks(log) == 0


def test_finding_5_a_wildcard_covers_only_classes_defined_in_its_module() -> None:
    with target_node("--allow-spawn", "transport_peer:*") as node, Node(heartbeat=1.0) as peer:
        for path in (
            "transport_peer:llmos.kernel._kernel.Kernel",
            "transport_peer:llmos.agents.FakeModel",
            "transport_peer:Actor",  # imported there, defined in llmos.actors
            "transport_peer:Node",
            "transport_peer:Echo.__init__",
        ):
            with pytest.raises(SpawnRefused):
                peer.spawn_remote(node.address, path, timeout=5)
        ref = peer.spawn_remote(node.address, "transport_peer:NodeStatsActor", None, timeout=5)
        assert ref is not None  # a class defined in transport_peer is covered
        node.check("spawns outside the wildcard")
        node.finish()
