"""llmos nodes on a local Ray cluster (a head and two worker raylets, one with a logical GPU):
placed apart, found by name from a fresh driver, a group chat over model replicas, a removed
Ray node (in-flight asks fail with NodeUnreachable, the pool routes around it, Ray restarts the
node, the pool uses it again), and ``llmos cluster down`` leaving nothing behind.

The tests share one Ray cluster and its two model nodes (module fixtures), each opening its own
driver node; the removal test moves one node to the other raylet, the down test stops them."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster as RayCluster

from llmos.agents import ChatAgent, MaxTurns, run_chat, spawn
from llmos.cluster import BootActor, Cluster, ClusterError, ClusterRef, NodeInfo, current
from llmos.models import Completion, Generate
from llmos.transport import NodeUnreachable

pytestmark = pytest.mark.multiprocess

NAMESPACE = "llmos-test"
STORE = 80 * 1024 * 1024
# Each request takes 1 s, so asks queued on a node are still in flight when it is removed.
MODEL = BootActor("llmos.models:FakeModel", "model", kwargs={"delay": 1.0})
NODES = ["m1", "m2"]
FINDER = BootActor("cluster_support:Finder", "finder")
HERE = str(Path(__file__).resolve().parent)


@pytest.fixture(scope="module")
def raylets() -> Iterator[dict[str, Any]]:
    head = RayCluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            "object_store_memory": STORE,
            # Notice a removed raylet in about a second (the default takes ~15 s).
            "_system_config": {
                "health_check_initial_delay_ms": 0,
                "health_check_period_ms": 300,
                "health_check_failure_threshold": 3,
            },
        },
    )
    try:
        gpu = head.add_node(num_cpus=2, num_gpus=1, object_store_memory=STORE)
        plain = head.add_node(num_cpus=2, object_store_memory=STORE)
        head.wait_for_nodes()
        # The nodes' processes import the tests' own actors (cluster_support) from here.
        path = os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p)
        ray.init(
            address=head.address,
            namespace=NAMESPACE,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": path}},
        )
        yield {"head": head, "gpu": gpu, "plain": plain, "address": head.address}
    finally:
        ray.shutdown()
        head.shutdown()  # type: ignore[no-untyped-call]


def connect() -> Cluster:
    return Cluster.connect(namespace=NAMESPACE, bind_host="127.0.0.1", heartbeat=2.0)


@pytest.fixture(scope="module")
def nodes(raylets: dict[str, Any]) -> Iterator[list[NodeInfo]]:
    """Two model nodes, spread over the workers; whatever is left is stopped at the end."""
    with connect() as cluster:
        infos = cluster.start_nodes(
            NODES, actors=[MODEL], allow_spawn=["llmos.models:FakeModel"], strategy="SPREAD"
        )
    try:
        yield infos
    finally:
        with connect() as cluster:
            cluster.down()


def llmos_cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "llmos.cli", "cluster", *args, "--namespace", NAMESPACE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def ask_text(ref: Any, text: str, timeout: float = 30.0) -> Any:
    return ref.ask(Generate(messages=[{"role": "user", "content": text}]), timeout=timeout)


def test_nodes_land_apart_are_found_by_name_and_host_a_group_chat(
    raylets: dict[str, Any], nodes: list[NodeInfo]
) -> None:
    infos = nodes
    with connect() as cluster:
        assert [i.name for i in infos] == NODES
        assert infos[0].ray_node != infos[1].ray_node  # one per worker raylet
        assert {i.ray_node for i in infos} == {raylets["gpu"].node_id, raylets["plain"].node_id}

        # Resource requests and a strict placement: two nodes that each want half a GPU
        # share the one Ray node that has a GPU.
        packed = cluster.start_nodes(
            ["p1", "p2"], num_cpus=0.5, num_gpus=0.5, strategy="STRICT_PACK", actors=[FINDER]
        )
        assert {p.ray_node for p in packed} == {raylets["gpu"].node_id}
        assert all(p.assigned.get("GPU") == 0.5 for p in packed)
        # Discovery from inside a node: an actor on p1 lists the nodes, finds m2's model by
        # name through llmos.cluster.current() and asks it, over p1's own llmos node.
        seen = cluster.lookup("finder", node="p1").ask(["m2", "model", "hi"], timeout=60).get()
        assert seen["nodes"] == ["m1", "m2", "p1", "p2"]
        assert seen["ref"] == "ClusterRef" and seen["address"] == infos[1].address
        assert seen["text"]
        with pytest.raises(ClusterError, match="inside an llmos node"):
            current()  # this driver is no node
        assert cluster.stop_nodes(["p1", "p2"]) == ["p1", "p2"]
        with pytest.raises(ClusterError, match="no room"):  # three apart on two raylets
            cluster.start_nodes(
                ["x1", "x2", "x3"], num_cpus=0.1, strategy="STRICT_SPREAD", timeout=2
            )
        with pytest.raises(ClusterError, match="taken: \\['m1'\\]"):
            cluster.start_nodes(["m1"])
        assert cluster.node_names() == NODES

        # A fresh driver (another process) finds the nodes and their actors by name.
        out = llmos_cli("status", "--address", raylets["address"], "--bind-host", "127.0.0.1")
        assert "2 llmos nodes" in out
        for info in infos:
            assert info.address in out
        assert out.count("model  FakeModel") == 2, out

        # Spawn on the node that has a GPU; lookup finds it there by name.
        cluster.spawn("llmos.models:FakeModel", name="gpu-model", resources={"GPU": 1})
        gpu_node = next(i for i in infos if i.machine.get("GPU", 0) >= 1)
        found = cluster.lookup("gpu-model")
        assert found.node == gpu_node.address
        assert isinstance(ask_text(found, "hello").get(), Completion)
        assert cluster.pick({"GPU": 1}).name == gpu_node.name

        # Three agents here, their model replicated on two Ray nodes.
        model = cluster.replicas("model")
        try:
            team = [
                spawn(ChatAgent, model, f"You are {n}.", name=n, model_timeout=30)
                for n in ("ada", "rex", "eve")
            ]
            result = run_chat(
                team, "Plan a picnic.", termination=MaxTurns(3), printer=None, timeout=60
            )
            assert result.turns == 3
            served = [s.served for s in model.replica_stats()]
            assert sum(served) >= 3 and min(served) >= 1, served
        finally:
            model.stop()

        # The kernels' load figures, read over the transport, steer a spawn elsewhere.
        busy = [ask_text(cluster.lookup("model", node="m1"), f"busy {i}") for i in range(2)]
        assert cluster.pick().name == "m2"
        for reply in busy:
            assert isinstance(reply.get(), Completion)


def test_removed_node_fails_in_flight_asks_and_the_pool_routes_around_and_back(
    raylets: dict[str, Any], nodes: list[NodeInfo]
) -> None:
    with connect() as cluster:
        victim = next(i for i in cluster.nodes() if i.ray_node == raylets["plain"].node_id)
        model = cluster.replicas("model", NODES)
        named = cluster.ref("model", victim.name)  # refs by name follow the node's restarts
        try:
            direct = cluster.lookup("model", node=victim.name)
            assert isinstance(direct, ClusterRef) and direct == named
            pinned = cluster.local.remote_ref("model", victim.address)  # bound to one address
            from_loop = cluster.lookup("model", node=victim.name)  # asked from asyncio after
            counted = cluster.lookup("model", node=victim.name)  # asked for its statistics
            # Three asks to the victim's model by name, then four through the pool (two of
            # them queue behind those three): all are in flight when its raylet goes.
            direct_replies = [ask_text(direct, f"direct {i}") for i in range(3)]
            pool_replies = [ask_text(model, f"pooled {i}") for i in range(4)]
            raylets["head"].remove_node(raylets["plain"], allow_graceful=False)

            lost = 0
            for reply in direct_replies:
                try:
                    assert isinstance(reply.get(), Completion)
                except NodeUnreachable:
                    lost += 1
            assert lost >= 1  # what was in flight there fails, typed, and is not resent
            assert direct.followed == 0
            for reply in pool_replies:
                assert isinstance(reply.get(), Completion)  # retried once on the other node
            assert model.retried >= 1
            assert cluster.local.peer_state(victim.address) == "down"  # heartbeats saw it go
            stats = {s.node: s for s in model.replica_stats()}
            assert stats[victim.name].lost == 1

            # Ray restarts the node on the remaining raylet; the pool takes it back.
            assert model.wait_up(timeout=60) == 2
            back = cluster.node(victim.name)
            assert back.restarted and back.ray_node == raylets["gpu"].node_id
            assert back.address != victim.address
            before = {s.node: s.served for s in model.replica_stats()}
            for reply in [ask_text(model, f"again {i}") for i in range(4)]:
                assert isinstance(reply.get(), Completion)
            after = {s.node: s.served for s in model.replica_stats()}
            assert after[victim.name] > before[victim.name]
            assert isinstance(
                ask_text(cluster.lookup("model", node=victim.name), "hi").get(), Completion
            )
            # The refs by name taken before the restart follow the node to its new address:
            # the old one is known down, so the ask never leaves for it and Ray is asked.
            assert isinstance(ask_text(direct, "by name").get(), Completion)
            assert direct.followed == 1 and direct.node == back.address
            request = Generate(messages=[{"role": "user", "content": "from asyncio"}])
            answer = asyncio.run(from_loop.ask_async(request, timeout=30))
            assert isinstance(answer, Completion) and from_loop.node == back.address
            assert counted.statistics().processed >= 1 and counted.node == back.address
            assert named.wait_up(timeout=30) == back.address
            assert isinstance(ask_text(named, "by name").get(), Completion)
            with pytest.raises(NodeUnreachable):  # a plain remote ref stays with the old node
                ask_text(pinned, "old address", timeout=5).get()
        finally:
            model.stop()


def test_cluster_down_leaves_no_process_socket_or_ray_actor(
    raylets: dict[str, Any], nodes: list[NodeInfo]
) -> None:
    with connect() as cluster:
        infos = cluster.nodes()
        assert [i.name for i in infos] == NODES
        kept = cluster.ref("model", "m1")
        assert isinstance(ask_text(kept, "before").get(), Completion)
        out = llmos_cli("down", "--address", raylets["address"], "--bind-host", "127.0.0.1")
        assert "stopped 2 llmos nodes: m1, m2" in out
        with pytest.raises(NodeUnreachable):  # stopped for good: Ray has no new address
            ask_text(kept, "after", timeout=10).get()
    again = llmos_cli("status", "--address", raylets["address"], "--bind-host", "127.0.0.1")
    assert "no llmos cluster in Ray namespace 'llmos-test'" in again
    left = [
        a for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == NAMESPACE
    ]
    assert left == []
    groups = ray.util.placement_group_table().values()
    assert all(g["state"] == "REMOVED" for g in groups if g["name"].startswith("llmos:"))
    for info in infos:
        assert_process_ends(info.pid, timeout=30)
        host, port = info.address.removeprefix("tcp://").rsplit(":", 1)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, int(port)), timeout=5).close()


def assert_process_ends(pid: int, timeout: float) -> None:
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([handle], [], [], timeout)  # readable once it has exited
        assert ready, f"node process {pid} still runs {timeout} s after llmos cluster down"
    finally:
        os.close(handle)


def test_the_ray_cluster_example_runs_on_the_same_ray_cluster(
    raylets: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location(
        "ray_cluster_example", Path(__file__).resolve().parent.parent / "examples/ray_cluster.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    argv = ["--fake", "--turns", "3", "--bind-host", "127.0.0.1", "--namespace", "llmos-example"]
    assert example.main(argv) == 0
    out = capsys.readouterr().out
    assert "2 model nodes up" in out and "reason: MaxTurns(3)" in out
    assert "stopped model-1, model-2" in out
    assert ray.util.list_named_actors(all_namespaces=True) == []
