"""Ask round trip to an llmos node started by Ray vs the same node started by hand, and the
time to recover a node Ray lost.

Run: ``python benchmarks/bench_ray.py [--asks 300] [--rounds 5] [--kills 2]``.

A local Ray cluster (``ray.cluster_utils.Cluster``: a head and two worker raylets) runs a
``llmos.cluster`` node with a ``FakeModel``; beside it, ``llmos node`` is started by hand as a
subprocess with the same CURVE key pair and the same FakeModel spawned on it. This process's
node asks each a small ``Generate`` in alternating blocks (both over tcp on 127.0.0.1 with
CURVE), so both see the same background load; the message plane is the same, so the ratio
should be about 1. The table prints min / median / max of each block's mean round trip and of
the per-round ratios, and the load average.

Recovery: ``--kills`` times, SIGKILL the Ray-started node's process and time until the
replicas ref has it back (Ray restarted it, its model runs again) and an ask there succeeds;
then once, remove the raylet it runs on (a lost machine) and time the same. Not a test.
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
        by_ray = cluster.lookup("model", node="r1")
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
        block(by_ray, 50), block(by_hand, 50)  # warm both connections
        times: dict[str, list[float]] = {"ray": [], "hand": []}
        ratios = []
        for i in range(args.rounds):
            order = ["ray", "hand"] if i % 2 == 0 else ["hand", "ray"]
            got = {}
            for variant in order:
                got[variant] = block(by_ray if variant == "ray" else by_hand, args.asks)
                times[variant].append(got[variant])
            ratios.append(got["ray"] / got["hand"])
        print(f"ask round trip, {args.rounds} rounds x {args.asks} asks  (min / median / max)")
        print(f"  node started by Ray    {summary(times['ray'], 1e6, 'us')}")
        print(f"  node started by hand   {summary(times['hand'], 1e6, 'us')}")
        print(f"  ratio Ray / hand       {summary(ratios, 1, 'x')}")
        print(f"  load average {os.getloadavg()}")

        replicas = cluster.replicas("model", ["r1"])
        recover: list[float] = []
        for _ in range(args.kills):
            pid = cluster.node("r1").pid
            start = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            recover.append(until_back(replicas, start))
        print(f"recovery after the node process is killed ({args.kills} kills)")
        print(f"  until an ask succeeds  {summary(recover, 1, 's')}")
        where = cluster.node("r1").ray_node
        lost = next(w for w in workers if w.node_id == where)
        start = time.perf_counter()
        head.remove_node(lost, allow_graceful=False)
        seconds = until_back(replicas, start)
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


def until_back(replicas: Any, start: float) -> float:
    """Seconds from ``start`` until the replica is lost, back, and answers an ask."""
    while True:
        try:
            replicas.ask(REQUEST, timeout=10).get()
        except Exception:  # lost: wait for Ray to bring it back
            break
    replicas.wait_up(timeout=120)
    replicas.ask(REQUEST, timeout=10).get()
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
