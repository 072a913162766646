"""``llmos cluster up|status|down``: llmos nodes on a Ray cluster (the ``llmos[ray]`` extra).

Ray places the node processes and restarts them; llmos carries the messages. ``--address``
names an existing Ray cluster (``ray start --head`` on one machine, a KubeRay head service on
Kubernetes); without it the command uses ``RAY_ADDRESS``, else the Ray cluster that ``ray start``
runs on this machine, and ``up`` starts one (``ray start --head``, which outlives the command;
``ray stop`` ends it) when there is none. Never another program's private Ray instance.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_cluster_parser", "run_cluster"]

_MODELS = {"fake": "llmos.models:FakeModel", "default": "llmos.models:ModelActor"}


def _resource(text: str) -> tuple[str, float]:
    name, sep, amount = text.partition("=")
    try:
        value = float(amount)
    except ValueError:
        value = -1.0
    if not sep or not name or value <= 0:
        raise argparse.ArgumentTypeError(f"expected NAME=AMOUNT (e.g. TPU=1), got {text!r}")
    return name, value


def add_cluster_parser(sub: Any) -> None:
    """Add ``cluster`` and its verbs to the ``llmos`` command's subparsers."""
    cluster = sub.add_parser("cluster", help="llmos nodes placed and restarted by Ray")
    verbs = cluster.add_subparsers(dest="verb", metavar="VERB", required=True)
    up = verbs.add_parser("up", help="start llmos nodes as Ray actors")
    status = verbs.add_parser("status", help="the nodes, their resources and their actors")
    down = verbs.add_parser("down", help="stop every node, its Ray actor and its sockets")
    for verb in (up, status, down):
        verb.add_argument(
            "--address", default=None, help="a running Ray cluster (default: the local one)"
        )
        verb.add_argument("--namespace", default="llmos", help="Ray namespace (llmos)")
        verb.add_argument("--bind-host", default=None, help="IP this driver binds (Ray's)")
        verb.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (120)")
        verb.set_defaults(run=run_cluster)
    up.add_argument("--nodes", type=int, default=2, help="how many nodes (2)")
    up.add_argument("--prefix", default="node", help="node names: PREFIX-1, PREFIX-2, ...")
    up.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per node (1)")
    up.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per node (0)")
    up.add_argument(
        "--resource", type=_resource, action="append", default=[], metavar="NAME=AMOUNT"
    )
    up.add_argument(
        "--strategy",
        choices=("SPREAD", "PACK", "STRICT_SPREAD", "STRICT_PACK"),
        default="SPREAD",
        help="placement over Ray nodes (SPREAD)",
    )
    up.add_argument(
        "--no-placement-group", action="store_true", help="schedule each node on its own"
    )
    up.add_argument(
        "--model",
        choices=("none", "fake", "default"),
        default="none",
        help="start a 'model' actor on every node: the fake or the default model",
    )
    up.add_argument("--allow-spawn", action="append", default=[], metavar="PKG.MOD:CLASS")


def _local_ray_address() -> str | None:
    """RAY_ADDRESS, else the address ``ray start`` records on this machine until ``ray stop``
    (``ray_current_cluster`` in Ray's temporary folder), else None."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    linux_tmp = os.environ.get("TMPDIR") if sys.platform.startswith("linux") else None
    root = os.environ.get("RAY_TMPDIR") or linux_tmp or "/tmp"
    try:
        recorded = Path(root, "ray", "ray_current_cluster").read_text().strip()
    except OSError:
        return None
    return recorded or None


def _start_local_ray() -> None:
    ray_command = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    done = subprocess.run(
        [ray_command, "start", "--head", "--disable-usage-stats", "--include-dashboard=false"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ray start --head failed: {done.stderr.strip()[-400:]}")


def run_cluster(args: argparse.Namespace) -> int:
    """Run one ``llmos cluster`` verb; returns the exit code."""
    import ray

    from llmos.cluster import BootActor, Cluster, ClusterError

    logging.getLogger("ray").setLevel(logging.WARNING)
    # Ray warns that a placement group's removal kills its restartable actors: llmos removes
    # a group only once its nodes are stopped for good, so the warning says nothing here.
    logging.getLogger("ray.actor").addFilter(
        lambda record: "detached actor with a placement group" not in record.getMessage()
    )
    address = args.address or _local_ray_address()
    if address is None:
        if args.verb != "up":
            print(
                "no Ray cluster runs on this machine (none started with `ray start`, no "
                "RAY_ADDRESS): nothing to show or stop; name another one with --address"
            )
            return 0
        _start_local_ray()
        address = _local_ray_address() or "auto"
        print(f"started a local Ray head at {address} (it outlives this command: `ray stop`)")
    options = {"namespace": args.namespace, "bind_host": args.bind_host, "timeout": args.timeout}
    # The cluster `ray start` runs here is reached as "auto": Ray then reads that session's own
    # settings, its token authentication among them (a head started where ~/.ray/auth_token
    # exists requires the token; its bare address fails with InvalidAuthToken).
    named = args.address or os.environ.get("RAY_ADDRESS")
    try:
        cluster = Cluster.connect(named or "auto", create=args.verb == "up", **options)
    except ClusterError:
        if not ray.is_initialized():
            raise
        # Ray answered: this namespace has no llmos cluster.
        print(f"no llmos cluster in Ray namespace {args.namespace!r}: nothing to show or stop")
        return 0
    with cluster:
        if args.verb == "up":
            names = [f"{args.prefix}-{i}" for i in range(1, args.nodes + 1)]
            actors = [BootActor(_MODELS[args.model], "model")] if args.model != "none" else []
            print(
                f"starting {', '.join(names)} (waiting up to {args.timeout:g} s for Ray to "
                "place them; Ctrl+C stops them)",
                flush=True,
            )
            infos = cluster.start_nodes(
                names,
                num_cpus=args.num_cpus,
                num_gpus=args.num_gpus,
                resources=dict(args.resource),
                strategy=args.strategy,
                placement_group=not args.no_placement_group,
                actors=actors,
                allow_spawn=args.allow_spawn,
                timeout=args.timeout,
            )
            print(f"started {len(infos)} llmos nodes in Ray namespace {args.namespace!r}")
            _print_nodes(cluster, infos)
            where = "".join(
                f" --{flag} {value}"
                for flag, value in (("address", args.address), ("namespace", args.namespace))
                if value is not None and (flag, value) != ("namespace", "llmos")
            )
            print(f"stop them with: llmos cluster down{where}")
        elif args.verb == "status":
            names = cluster.node_names()
            infos = cluster.nodes(timeout=min(args.timeout, 10.0))
            print(f"{len(names)} llmos nodes in Ray namespace {args.namespace!r}")
            missing = sorted(set(names) - {info.name for info in infos})
            _print_nodes(cluster, infos)
            for name in missing:
                print(f"{name}: not answering (Ray is restarting it, or it is starting)")
        else:
            stopped = cluster.down(timeout=min(args.timeout, 30.0))
            print(f"stopped {len(stopped)} llmos nodes: {', '.join(stopped) or '-'}")
            print("Ray itself keeps running (stop a local one with: ray stop)")
    return 0


def _print_nodes(cluster: Any, infos: list[Any]) -> None:
    from llmos.kernel import KERNEL_NAME, NodeStatus

    for info in infos:
        assigned = ", ".join(f"{k}={v:g}" for k, v in sorted(info.assigned.items())) or "-"
        machine = ", ".join(
            f"{k}={v:g}" for k, v in sorted(info.machine.items()) if k in ("CPU", "GPU")
        )
        print(
            f"{info.name}  {info.address}  pid {info.pid}  ray node {info.ray_node[:12]}  "
            f"assigned [{assigned}]  machine [{machine}]"
            + ("  (restarted by Ray)" if info.restarted else "")
        )
        try:
            kernel = cluster.local.lookup(KERNEL_NAME, node=info.address, timeout=5.0)
            rows = kernel.ask(NodeStatus(), timeout=5.0).get()
        except Exception as exc:  # shown, not fatal: the other nodes are still listed
            print(f"    actors: unknown ({type(exc).__name__}: {exc})")
            continue
        for row in rows:
            print(
                f"    {row['name']}  {row['class']}  {row['state']}  "
                f"processed {row['processed']}  load {row['load']}"
            )
