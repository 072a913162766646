# llmos.kernel: the node's kernel actor, supervision and pools.
#   _kernel      Kernel (one per process, the root supervisor), kernel()
#   _errors      SupervisionError
#   _supervisor  Supervisor (nestable actor: starts children, hears their failures, acts)
#   _restarts    Restarts: a supervisor's decisions on failures (window, strategy group, backoff)
#   _children    the children table and the messages children's threads send (plain)
#   _spec        ChildSpec, Backoff, the Restart and Strategy types
#   _policy      restart intensity window and strategy groups (plain, no threads)
#   _timer       ThreadTimer (one llmos:timer thread), ManualTimer (tests)
#   _routers     round_robin, least_loaded, consistent_hash, broadcast
#   _pool        Pool (supervises and scales members), PoolCore, Autoscale
#   _pool_ref    PoolRef (routes in the sender's thread), Batch, GatherReply
#   _status      NodeStatus (what ``llmos status`` asks), status_rows
#   _ledger      TokenLedger, Ledger, TokenUsage: tokens per agent, dialogue and model
#   _stats       KernelStats, PoolStats, BatchFigures and the scheduling figures
# Imports point to llmos.actors (and, later, llmos.transport) only; nothing here imports agents.
from llmos.kernel._errors import SupervisionError
from llmos.kernel._kernel import KERNEL_NAME, Kernel, kernel
from llmos.kernel._ledger import (
    Ledger,
    LedgerKind,
    TokenLedger,
    TokenUsage,
    live_ledgers,
    merge_ledgers,
)
from llmos.kernel._policy import RestartWindow, restart_group, should_restart
from llmos.kernel._pool import Autoscale, Pool
from llmos.kernel._pool_ref import Batch, GatherReply, PoolRef
from llmos.kernel._routers import (
    Broadcast,
    ConsistentHash,
    HashKey,
    LeastLoaded,
    RoundRobin,
    Router,
    RouterName,
)
from llmos.kernel._spec import Backoff, ChildSpec, Restart, Strategy
from llmos.kernel._stats import (
    BatchFigures,
    KernelStats,
    PoolStats,
    load_balance_efficiency,
    parallel_efficiency,
    utilisation,
)
from llmos.kernel._status import NodeStatus, status_rows
from llmos.kernel._supervisor import Supervisor, supervisor_of
from llmos.kernel._timer import ManualTimer, ThreadTimer, Timer, TimerHandle, default_timer

__all__ = [
    "KERNEL_NAME",
    "Autoscale",
    "Backoff",
    "Batch",
    "BatchFigures",
    "Broadcast",
    "ChildSpec",
    "ConsistentHash",
    "GatherReply",
    "HashKey",
    "Kernel",
    "KernelStats",
    "LeastLoaded",
    "Ledger",
    "LedgerKind",
    "ManualTimer",
    "NodeStatus",
    "Pool",
    "PoolRef",
    "PoolStats",
    "Restart",
    "RestartWindow",
    "RoundRobin",
    "Router",
    "RouterName",
    "Strategy",
    "SupervisionError",
    "Supervisor",
    "ThreadTimer",
    "Timer",
    "TimerHandle",
    "TokenLedger",
    "TokenUsage",
    "default_timer",
    "kernel",
    "live_ledgers",
    "load_balance_efficiency",
    "merge_ledgers",
    "parallel_efficiency",
    "restart_group",
    "should_restart",
    "status_rows",
    "supervisor_of",
    "utilisation",
]
