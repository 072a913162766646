"""Ask round trip to an llmos node started by Ray vs the same node started by hand, and the
time to recover a node Ray lost.

Run: ``python benchmarks/bench_ray.py [--asks 300] [--rounds 5] [--kills 2]``.

A local Ray cluster (``ray.cluster_utils.Cluster``: a head and two worker raylets) runs a
``llmos.cluster`` node with a ``FakeModel``; beside it, ``llmos node`` is started by hand as a
subprocess with the same CURVE key pair and the same FakeModel spawned on it. This process's
node asks each a small ``Generate`` in interleaved blocks (all over tcp on 127.0.0.1 with
CURVE), so all see the same background load; the message plane is the same, so the ratio
should be about 1. The Ray-started node is asked through a bare remote ref and through the
ref by name that ``Cluster.lookup`` gives (a ``ClusterRef``, which follows restarts). The
table prints min / median / max of each block's mean round trip and of the per-round ratios,
and the load average.

Recovery: ``--kills`` times for each kind of ref (a Replicas of one and a ClusterRef), SIGKILL
the Ray-started node's process and time until Ray runs it in a new process and an ask through
the ref is answered there; then once, remove the raylet it runs on (a lost machine) and time
the same through the Replicas. Not a test.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import ray
from ray.cluster_utils import Cluster as RayCluster

import llmos.actors as actors
from llmos.actors import ActorRef
from llmos.cluster import BootActor, Cluster
from llmos.models import Generate

NAMESPACE = "llmos-bench"
STORE = 80 * 1024 * 1024
REQUEST = Generate(messages=[{"role": "user", "content": "ping"}], max_new_tokens=4)


def block(ref: ActorRef, asks: int) -> float:
    """Mean seconds per ask over ``asks`` sequential asks."""
    start = time.perf_counter()
    for _ in range(asks):
        ref.ask(REQUEST, timeout=10).get()
    return (time.perf_counter() - start) / asks


def start_by_hand(secret_file: str, public: str) -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmos.cli",
            "node",
            "--keys",
            secret_file,
            f"--allow-key={public}",
            "--allow-spawn",
            "llmos.models:FakeModel",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert child.stdout is not None
    address = child.stdout.readline().strip()
    if not address:
        child.kill()
        raise SystemExit("llmos node did not start")
    return child, address


def summary(values: list[float], scale: float, unit: str) -> str:
    v = sorted(x * scale for x in values)
    return f"{v[0]:8.1f} {statistics.median(v):8.1f} {v[-1]:8.1f} {unit}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--asks", type=int, default=300, help="asks per block")
    parser.add_argument("--rounds", type=int, default=5, help="blocks per variant")
    parser.add_argument("--kills", type=int, default=2, help="process kills to time")
    args = parser.parse_args(argv)

    head = RayCluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            "object_store_memory": STORE,
            "_system_config": {
                "health_check_initial_delay_ms": 0,
                "health_check_period_ms": 300,
                "health_check_failure_threshold": 3,
            },
        },
    )
    child: subprocess.Popen[str] | None = None
    cluster: Cluster | None = None
    try:
        workers = [head.add_node(num_cpus=2, object_store_memory=STORE) for _ in range(2)]
        head.wait_for_nodes()
        ray.init(address=head.address, namespace=NAMESPACE, log_to_driver=False)
        cluster = Cluster.connect(namespace=NAMESPACE, bind_host="127.0.0.1")
        model = BootActor("llmos.models:FakeModel", "model")
        cluster.start_nodes(["r1"], actors=[model], placement_group=False)
        by_name = cluster.lookup("model", node="r1")  # a ClusterRef: follows r1's restarts
        by_ray = cluster.local.remote_ref("model", by_name.node or "")  # the bare message plane
        with tempfile.TemporaryDirectory() as keys_dir:
            # The hand-started node gets the cluster's own key pair: the same CURVE set-up.
            secret_file = os.path.join(keys_dir, "node.key_secret")
            with open(secret_file, "w") as out:
                out.write(
                    "metadata\ncurve\n"
                    f'    public-key = "{cluster.keys.public.decode()}"\n'
                    f'    secret-key = "{cluster.keys.secret.decode()}"\n'
                )
            child, address = start_by_hand(secret_file, cluster.keys.public.decode())
        by_hand = cluster.local.spawn_remote(
            address, "llmos.models:FakeModel", name="model", timeout=10
        )
        refs: dict[str, ActorRef] = {"ray": by_ray, "name": by_name, "hand": by_hand}
        for ref in refs.values():
            block(ref, 50)  # warm the connections
        times: dict[str, list[float]] = {variant: [] for variant in refs}
        ratios: dict[str, list[float]] = {"ray": [], "name": []}
        variants = list(refs)
        for i in range(args.rounds):
            order = variants[i % 3 :] + variants[: i % 3]  # each variant first in turn
            got = {variant: block(refs[variant], args.asks) for variant in order}
            for variant, seconds in got.items():
                times[variant].append(seconds)
            ratios["ray"].append(got["ray"] / got["hand"])
            ratios["name"].append(got["name"] / got["hand"])
        print(f"ask round trip, {args.rounds} rounds x {args.asks} asks  (min / median / max)")
        print(f"  node started by Ray    {summary(times['ray'], 1e6, 'us')}")
        print(f"    by name (ClusterRef) {summary(times['name'], 1e6, 'us')}")
        print(f"  node started by hand   {summary(times['hand'], 1e6, 'us')}")
        print(f"  ratio Ray / hand       {summary(ratios['ray'], 1, 'x')}")
        print(f"  ratio by name / hand   {summary(ratios['name'], 1, 'x')}")
        print(f"  load average {os.getloadavg()}")

        replicas = cluster.replicas("model", ["r1"])
        recover: dict[str, list[float]] = {"replicas": [], "name": []}
        for ref, times_back in ((replicas, recover["replicas"]), (by_name, recover["name"])):
            for _ in range(args.kills):
                pid = cluster.node("r1").pid
                start = time.perf_counter()
                os.kill(pid, signal.SIGKILL)
                times_back.append(until_back(cluster, ref, start, pid))
        print(f"recovery after the node process is killed ({args.kills} kills each)")
        print(f"  until a Replicas ask succeeds   {summary(recover['replicas'], 1, 's')}")
        print(f"  until a ClusterRef ask succeeds {summary(recover['name'], 1, 's')}")
        before = cluster.node("r1")
        lost = next(w for w in workers if w.node_id == before.ray_node)
        start = time.perf_counter()
        head.remove_node(lost, allow_graceful=False)
        seconds = until_back(cluster, replicas, start, before.pid)
        print(f"recovery after its raylet is removed: {seconds:.2f} s (one run)")
        print(f"  load average {os.getloadavg()}")
        replicas.stop()
        cluster.down()
    finally:
        if child is not None:
            child.send_signal(signal.SIGINT)
            child.wait(15)
            if child.stdout is not None:
                child.stdout.close()
        if cluster is not None:
            cluster.close()
        actors.stop_all()
        ray.shutdown()
        head.shutdown()  # type: ignore[no-untyped-call]
    return 0


def until_back(cluster: Cluster, ref: Any, start: float, old_pid: int) -> float:
    """Seconds from ``start`` until Ray runs node r1 in a new process (not ``old_pid``) and
    ``ref`` (Replicas or ClusterRef) has an ask answered there."""
    deadline = start + 120
    while cluster.node("r1", timeout=60).pid == old_pid:  # the old process still answers
        if time.perf_counter() > deadline:
            raise SystemExit("Ray did not restart node r1 within 120 s")
        time.sleep(0.01)
    while True:
        try:
            ref.ask(REQUEST, timeout=10).get()
            return time.perf_counter() - start
        except Exception:  # sent to the old address before it was known down: wait for the ref
            if time.perf_counter() > deadline:
                raise
            ref.wait_up(timeout=max(deadline - time.perf_counter(), 1.0))


if __name__ == "__main__":
    sys.exit(main())
