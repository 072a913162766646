"""Model replicas on a Ray cluster: Ray places and restarts the nodes, llmos carries the talk.

Run it with ``python examples/ray_cluster.py [--address ADDRESS] [--fake] [--turns N]``.

Without ``--address`` it starts a local Ray (this process owns it); with one it joins a
running Ray cluster (``ray start --head`` on one machine and ``ray start --address=...`` on
the others, or a KubeRay ``RayCluster`` on Kubernetes: pass its head service's address, or run
this file in the head pod with ``--address auto``). It starts two llmos nodes as Ray actors
spread over the Ray nodes, each loading the default model (``--fake``: a fake model), and runs a
three-agent group chat here whose model ref routes each request to the least-loaded replica.
At the end ``cluster.down()`` stops the nodes, their Ray actors and their sockets.
"""

from __future__ import annotations

import argparse
import time

import llmos.actors as actors
from llmos.agents import ChatAgent, MaxTurns, Repetition, run_chat, spawn
from llmos.cluster import BootActor, Cluster

TEAM = {
    "wren": "You are Wren, a copywriter. Propose or improve a short slogan.",
    "cole": "You are Cole, a critic. Point out one weakness of the latest slogan.",
    "eda": "You are Eda, the editor. Pick the best slogan and say why.",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", help="a running Ray cluster (default: start a local one)")
    parser.add_argument("--namespace", default="llmos-example", help="Ray namespace")
    parser.add_argument("--fake", action="store_true", help="a fake model instead of SmolLM2")
    parser.add_argument("--nodes", type=int, default=2, help="model nodes (2)")
    parser.add_argument("--turns", type=int, default=3, help="turns of the chat (3)")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens per turn (32)")
    parser.add_argument("--bind-host", help="IP the nodes bind (default: each Ray node's IP)")
    args = parser.parse_args(argv)

    model_class = "llmos.models:FakeModel" if args.fake else "llmos.models:ModelActor"
    started = time.perf_counter()
    cluster = Cluster.connect(args.address, namespace=args.namespace, bind_host=args.bind_host)
    try:
        names = [f"model-{i}" for i in range(1, args.nodes + 1)]
        infos = cluster.start_nodes(
            names, num_cpus=1, strategy="SPREAD", actors=[BootActor(model_class, "model")]
        )
        print(f"{len(infos)} model nodes up in {time.perf_counter() - started:.1f} s:")
        for info in infos:
            print(f"  {info.name} at {info.address} (pid {info.pid}, Ray node {info.ray_node[:8]})")
        model = cluster.replicas("model")
        team = [
            spawn(
                ChatAgent,
                model,
                persona,
                name=name,
                max_new_tokens=args.max_tokens,
                model_timeout=300,
            )
            for name, persona in TEAM.items()
        ]
        result = run_chat(
            team,
            "A slogan for a bakery that opens at 5 am.",
            termination=MaxTurns(args.turns) | Repetition(),
            timeout=900,
        )
        print(f"reason: {result.reason}")
        for stats in model.replica_stats():
            print(f"  {stats.node}: {stats.served} answered")
        model.stop()
        return 0 if result.turns > 0 else 1
    finally:
        actors.stop_all()
        stopped = cluster.down()
        print(f"stopped {', '.join(stopped)}")
        cluster.close()


if __name__ == "__main__":
    raise SystemExit(main())
