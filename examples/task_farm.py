"""A task farm: 100 tasks over a pool of 5 workers, and the three scheduling figures.

The tasks take from 5 to 40 ms each (simulated waits, like calls to a model or a service). They
go to the pool through one ref; the pool's router picks a worker for each. At the end the
example prints the figures the kernel reports for the finished batch:

- load-balancing efficiency = min worker load / mean worker load (1.0 = perfectly even);
- utilisation = busy time / (workers x wall time);
- parallel efficiency = speed-up / workers, speed-up = summed task time / wall time.

Run it with ``python examples/task_farm.py [--tasks 100] [--workers 5] [--router least_loaded]``.
"""

from __future__ import annotations

import argparse
import random
import time

from llmos.actors import Actor, handler, message
from llmos.kernel import kernel


@message("example.Task")
class Task:
    """One unit of work that takes ``seconds`` to do."""

    number: int
    seconds: float


class FarmWorker(Actor):
    @handler(Task)
    def work(self, task: Task) -> str:
        time.sleep(task.seconds)  # stands in for waiting on a model or a service
        return self.actor_name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument(
        "--router",
        default="least_loaded",
        choices=["round_robin", "least_loaded", "consistent_hash", "broadcast"],
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    tasks = [Task(i, rng.uniform(0.005, 0.040)) for i in range(args.tasks)]
    k = kernel()
    pool = k.spawn_pool(FarmWorker, size=args.workers, router=args.router, name="farm")
    try:
        batch = pool.batch()
        replies = [pool.ask(task, timeout=60) for task in tasks]
        done_by: dict[str, int] = {}
        for reply in replies:
            answer = reply.get()
            for name in answer if isinstance(answer, list) else [answer]:
                done_by[name] = done_by.get(name, 0) + 1
        figures = batch.finish()
    finally:
        k.shutdown()

    print(f"{figures.tasks} tasks on {args.workers} workers ({args.router})")
    print("tasks per worker: " + ", ".join(f"{n} {c}" for n, c in sorted(done_by.items())))
    print(
        f"wall time: {figures.wall_seconds:.3f} s, summed task time: {figures.busy_seconds:.3f} s"
    )
    print(f"speed-up: {figures.speed_up:.2f}")
    print(f"load-balancing efficiency: {figures.load_balance_efficiency:.3f}")
    print(f"utilisation: {figures.utilisation:.3f}")
    print(f"parallel efficiency: {figures.parallel_efficiency:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
