"""Hostile peers against a real ``llmos node`` process over TCP (one test per finding of issue 13).

After every attack the node must be alive, its memory bounded, a well-behaved peer's ask answered
within a second, and SIGINT must still end it with exit code 0 within 15 seconds
(``transport_hostile.TargetNode``).
"""

from __future__ import annotations

import pytest
from transport_hostile import answer_to, attacker, packb, target_node, tracebacks
from transport_support import ask_item, hostile_frames

from llmos.transport._frames import REPLY, pack_frame

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
