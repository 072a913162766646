"""A second node in its own process (tests/transport_peer.py), over tcp:// and ipc://."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from observe_support import wait_for
from transport_peer import Add, CallBack, Record, Sleep, TellBack
from transport_support import (
    PEER_SCRIPT,
    PeerProcess,
    endpoint,
    hostile_frames,
    peer_process,
    raw_dealer,
    short_tmpdir,
)

from llmos.actors import Actor, AskTimeout, Terminated
from llmos.cli import main as llmos_main
from llmos.transport import (
    AuthError,
    FrameError,
    Node,
    NodeUnreachable,
    RemoteRef,
    SpawnRefused,
    generate_keys,
)
from llmos.transport._frames import FAIL, NOTICE, parse_frame

pytestmark = pytest.mark.multiprocess

HEARTBEAT = 1.0
SPAWNABLE = "transport_peer:Echo"


class Collector(Actor):
    def __init__(self, box: list[Any], done: threading.Event) -> None:
        super().__init__()
        self.box = box
        self.done = done

    def on_receive(self, message: Any) -> Any:
        self.box.append(message)
        self.done.set()
        return message * 2 if isinstance(message, int) else None


@pytest.fixture(scope="module", params=["tcp", "ipc"])
def remote(request: pytest.FixtureRequest) -> Iterator[tuple[str, PeerProcess]]:
    """A peer process shared by the tests of this module, per transport."""
    scheme = str(request.param)
    with (
        short_tmpdir() as folder,
        peer_process("--allow-spawn", SPAWNABLE, bind=endpoint(scheme, folder)) as peer,
    ):
        yield scheme, peer


@pytest.fixture
def node(remote: tuple[str, PeerProcess]) -> Iterator[Node]:
    scheme, _ = remote
    with short_tmpdir() as folder, Node(endpoint(scheme, folder), heartbeat=HEARTBEAT) as local:
        yield local


def fresh_echo(node: Node, peer: PeerProcess) -> RemoteRef:
    ref = node.spawn_remote(peer.address, SPAWNABLE, name=f"echo-{uuid.uuid4().hex[:8]}")
    assert isinstance(ref, RemoteRef)
    return ref


def test_tell_ask_and_ask_async_across_processes(
    node: Node, remote: tuple[str, PeerProcess]
) -> None:
    _, peer = remote
    echo = node.ref(f"echo@{peer.address}")
    assert echo.ask(Add(2, 3), timeout=10).get() == 5
    worker = fresh_echo(node, peer)
    for i in range(200):
        worker.tell(Record(i))
    assert worker.ask("records", timeout=10).get() == list(range(200))

    async def go() -> list[Any]:
        return list(
            await asyncio.gather(*(echo.ask_async(Add(i, 1), timeout=10) for i in range(50)))
        )

    assert asyncio.run(go()) == [i + 1 for i in range(50)]
    with pytest.raises(ValueError, match="boom on purpose"):
        echo.ask("boom", timeout=10).get()


def test_a_ref_in_a_message_is_used_for_the_reply(
    node: Node, remote: tuple[str, PeerProcess]
) -> None:
    _, peer = remote
    box: list[Any] = []
    done = threading.Event()
    collector = Collector.start(box, done, name="collector")
    echo = node.ref(f"echo@{peer.address}")
    assert echo.ask(TellBack(collector, "back to you"), timeout=10).get() == "told"
    assert done.wait(10) and box == ["back to you"]
    assert echo.ask(CallBack(collector, 21), timeout=10).get() == 42


def test_remote_spawn_allowed_and_refused(node: Node, remote: tuple[str, PeerProcess]) -> None:
    _, peer = remote
    ref = node.spawn_remote(peer.address, SPAWNABLE, "bonjour", name=f"s-{uuid.uuid4().hex[:6]}")
    assert ref.ask("greeting", timeout=10).get() == "bonjour"
    assert ref.stop(timeout=10) is True
    with pytest.raises(SpawnRefused, match="does not allow spawning 'transport_peer:Collector'"):
        node.spawn_remote(peer.address, "transport_peer:Collector", timeout=10)
    with pytest.raises(SpawnRefused):
        node.spawn_remote(peer.address, "subprocess:Popen", ["true"], timeout=10)


def test_hostile_frames_are_rejected_counted_and_the_peer_serves_on(
    node: Node, remote: tuple[str, PeerProcess]
) -> None:
    _, peer = remote
    stats = node.ref(f"node-stats@{peer.address}")
    echo = node.ref(f"echo@{peer.address}")
    for label, frame, answer in hostile_frames():
        before = stats.ask("stats", timeout=10).get()
        with raw_dealer(peer.address) as sock:
            if isinstance(frame, list):
                sock.send_multipart(frame)
            else:
                sock.send(frame)
            item = parse_frame(sock.recv(), node.limits)[0]  # every rejection is answered
        after = stats.ask("stats", timeout=10).get()
        if answer == "frame":
            assert after["bad_frames"] == before["bad_frames"] + 1, label
        else:
            assert after["bad_items"] == before["bad_items"] + 1, label
        if answer == "reply":
            assert item[0] == FAIL, label
            assert isinstance(node.codec.decode_error(item[2]), FrameError), label
        else:
            assert item[0] == NOTICE, label
        assert echo.ask(Add(1, 1), timeout=10).get() == 2, label


@pytest.mark.parametrize("scheme", ["tcp", "ipc"])
def test_kill_9_fails_every_pending_ask_then_a_restart_works_again(scheme: str) -> None:
    with short_tmpdir() as folder:
        peer = PeerProcess(bind=endpoint(scheme, folder))
        restarted: PeerProcess | None = None
        local = Node(endpoint(scheme, folder), heartbeat=HEARTBEAT)
        try:
            peer.start()
            echo = local.ref(f"echo@{peer.address}")
            box: list[Any] = []
            done = threading.Event()
            watcher = Collector.start(box, done, name="watcher")
            echo.watch(watcher)  # type: ignore[attr-defined]
            assert echo.ask("warm", timeout=10).get() == "warm"
            pending = [echo.ask(Sleep(60), timeout=60) for _ in range(50)]
            # Answered after the 50 asks were read there (one connection keeps order).
            stats = local.ref(f"node-stats@{peer.address}").ask("stats", timeout=10).get()
            assert stats["items_in"] >= 51
            killed = time.monotonic()
            peer.kill()
            failed_at = []
            for reply in pending:
                with pytest.raises(NodeUnreachable):
                    reply.get()
                failed_at.append(time.monotonic() - killed)
            assert max(failed_at) < HEARTBEAT + 0.5, failed_at
            assert done.wait(5) and isinstance(box[0], Terminated)
            assert "node lost" in box[0].reason

            restarted = PeerProcess(bind=peer.bind).start()
            assert restarted.address == peer.address
            local.connect(peer.address, timeout=10)  # waits; the ref needs nothing done to it
            assert echo.ask(Add(1, 2), timeout=10).get() == 3
        finally:
            peer.stop()
            if restarted is not None:
                restarted.stop()
            local.close()


def test_a_frozen_peer_is_noticed_and_its_stale_requests_are_not_run() -> None:
    with peer_process() as peer, Node(heartbeat=HEARTBEAT) as local:
        echo = local.ref(f"echo@{peer.address}")
        assert echo.ask("warm", timeout=10).get() == "warm"
        peer.signal(signal.SIGSTOP)
        stopped = time.monotonic()
        stale = echo.ask(Record("stale"), timeout=0.3)
        pending = echo.ask(Add(1, 1), timeout=60)
        with pytest.raises(AskTimeout):
            stale.get()
        with pytest.raises(NodeUnreachable):
            pending.get()
        assert time.monotonic() - stopped < HEARTBEAT + 1.5
        peer.signal(signal.SIGCONT)
        local.connect(peer.address, timeout=10)
        assert echo.ask(Add(2, 2), timeout=10).get() == 4
        assert "stale" not in echo.ask("records", timeout=10).get()
        # Usually both reached the frozen peer's socket buffer and were refused after SIGCONT
        # (counted there): the stale one by its deadline, the pending one because its asker
        # had given up on the node; under heavy load they may still have been in this node's
        # queue when the peer was marked down, and discarded with the old socket.
        stats = local.ref(f"node-stats@{peer.address}").ask("stats", timeout=10).get()
        assert stats["expired_requests"] in (0, 1, 2)


class Gated(Actor):
    """Blocks on its gate for "hold", records anything else."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate
        self.records: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        if message == "hold":
            assert self.gate.wait(30), "the test never opened the gate"
        elif message == "records":
            return list(self.records)
        else:
            self.records.append(message)
        return None


def test_an_ask_from_a_peer_that_froze_is_not_started_once_it_gave_up() -> None:
    """The far node is the asker: its ask waits in an actor's mailbox here while it is frozen;
    once it resumed and gave the ask up, the actor here must not start it."""
    gate = threading.Event()
    with peer_process("--heartbeat", str(HEARTBEAT)) as peer, Node(heartbeat=HEARTBEAT) as local:
        sink = Gated.start(gate, name="gated-sink")

        def peer_pending() -> int:
            stats = local.ref(f"node-stats@{peer.address}").ask("stats", timeout=5).get()
            return int(stats["pending_requests"])

        try:
            sink.tell("hold")
            echo = local.ref(f"echo@{peer.address}")
            # The peer's echo asks the sink here (timeout 5 s) and answers with what it got.
            relayed = echo.ask(CallBack(local.ref("gated-sink"), "from-the-peer"), timeout=30)
            wait_for("the peer's ask queued behind the hold", lambda: sink.statistics().load >= 2)
            assert peer_pending() == 1
            peer.signal(signal.SIGSTOP)
            try:
                wait_for(  # nothing heard from the peer for a heartbeat timeout
                    "the frozen peer counted silent",
                    lambda: local.statistics().clients_silent >= 1,
                )
            finally:
                peer.signal(signal.SIGCONT)
            with pytest.raises(NodeUnreachable):  # this node gave the peer up meanwhile
                relayed.get()
            local.connect(peer.address, timeout=10)
            # Back, the peer finds this node silent for too long and fails its ask.
            wait_for("the peer gave its ask up", lambda: peer_pending() == 0)
            gate.set()
            assert sink.ask("records", timeout=10).get() == []  # never started
            assert local.statistics().expired_requests == 1
        finally:
            gate.set()
            sink.stop()


def test_curve_across_processes(tmp_path: Path) -> None:
    server_keys = generate_keys(tmp_path / "server")
    client_keys = generate_keys(tmp_path / "client")
    intruder_keys = generate_keys(tmp_path / "intruder")
    with peer_process(
        "--keys", str(tmp_path / "server"), "--allow-key", str(tmp_path / "client" / "node.key")
    ) as peer:
        with Node(keys=client_keys, peer_keys={peer.address: server_keys.public}) as good:
            assert good.ref(f"echo@{peer.address}").ask(Add(4, 5), timeout=10).get() == 9
        with Node(keys=intruder_keys, peer_keys={peer.address: server_keys.public}) as bad:
            with pytest.raises(AuthError, match="refused this node's CURVE key"):
                bad.ref(f"echo@{peer.address}").ask(Add(4, 5), timeout=10).get()
        with Node(keys=client_keys, peer_keys={peer.address: server_keys.public}) as good:
            stats = good.ref(f"node-stats@{peer.address}").ask("stats", timeout=10).get()
            assert stats["auth_refused"] >= 1 and stats["bad_frames"] == 0


# -- the command line -----------------------------------------------------------------


def run_node_cli(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PEER_SCRIPT.parent), *sys.path]))
    return subprocess.Popen(
        [sys.executable, "-m", "llmos.cli", "node", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_cli_node_serves_until_a_signal_then_exits_cleanly(signum: int) -> None:
    proc = run_node_cli(
        "--allow-spawn", SPAWNABLE, "--heartbeat", "2", "--import", "transport_peer"
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        assert address.startswith("tcp://127.0.0.1:"), proc.stderr.read() if proc.stderr else ""
        with Node() as local:
            ref = local.spawn_remote(address, SPAWNABLE, "hi", name="cli-echo", timeout=10)
            assert ref.ask("greeting", timeout=10).get() == "hi"
        proc.send_signal(signum)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_cli_refuses_an_open_bind_without_keys_and_generates_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert llmos_main(["node", "--bind", "tcp://0.0.0.0:0"]) == 2
    assert "without CURVE keys" in capsys.readouterr().err
    assert llmos_main(["node", "--gen-keys", str(tmp_path / "keys")]) == 0
    assert (tmp_path / "keys" / "node.key").exists()
    assert (tmp_path / "keys" / "node.key_secret").exists()
    assert "public key" in capsys.readouterr().out
    assert llmos_main(["node", "--no-such-flag"]) == 2
