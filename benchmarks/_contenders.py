"""The optional contenders of bench_actors.py: Thespian, a Ray actor and autogen-core.

Each is driven the way its own users write it, with the same shapes as the llmos measures, and
with its own idiomatic message (a frozen dataclass ``Ping``; an int argument for Ray):
``tell_rate(n)`` is n tells to one actor and then one ask that returns once all were handled
(tells/s), ``ask_latency(n)`` is n sequential asks (seconds per ask). Every contender counts
the tells it handled and the sync ask checks the count, so a rate is never one of tells still
queued. A contender that is not installed is skipped with the reason.

No ``from __future__ import annotations`` here: autogen-core routes a message to a handler by
the handler's annotations, which it evaluates in this module's globals, and the agent class is
defined inside a function once autogen-core is imported.
"""

import asyncio
import importlib.metadata
import importlib.util
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["CONTENDERS", "Contender", "installed", "not_compared", "start_contenders"]

# (module, what it is): the order of the printed lines.
CONTENDERS = (
    ("thespian", "Thespian (simpleSystemBase)"),
    ("ray", "a Ray actor"),
    ("autogen_core", "autogen-core SingleThreadedAgentRuntime"),
)


class Contender(Protocol):
    name: str  # short, for the per-block lines and the ratios
    title: str  # what it is, with its version
    measures: str  # what a tell and an ask are, exactly

    def tell_rate(self, n: int) -> float: ...

    def ask_latency(self, n: int) -> float: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Ping:
    n: int


@dataclass(frozen=True)
class Count:
    """The sync ask: answered with the number of pings handled so far."""


@dataclass(frozen=True)
class Echo:
    """Thespian's ask: answered with n (a Thespian ping is a tell, which is not answered)."""

    n: int


def _checked(name: str, handled: Any, expected: int) -> None:
    if handled != expected:
        raise RuntimeError(f"{name}: the sync ask saw {handled} tells handled, not {expected}")


class ThespianContender:
    name = "thespian"

    def __init__(self) -> None:
        from thespian.actors import Actor, ActorSystem

        class Counter(Actor):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__()
                self.count = 0

            def receiveMessage(self, message: Any, sender: Any) -> None:
                if isinstance(message, Echo):
                    self.send(sender, message.n)
                elif isinstance(message, Count):
                    self.send(sender, self.count)
                elif isinstance(message, Ping):
                    self.count += 1

        self.title = f"Thespian {importlib.metadata.version('thespian')} (simpleSystemBase)"
        self.measures = (
            "tell = ActorSystem.tell(addr, Ping), ask = ActorSystem.ask(addr, Echo(n)) answered "
            "by self.send(sender, n); simpleSystemBase runs every actor in the caller's thread, "
            "so a tell returns once it was handled"
        )
        self.expected = 0
        self.system = ActorSystem("simpleSystemBase")
        self.addr = self.system.createActor(Counter)

    def tell_rate(self, n: int) -> float:
        msgs = [Ping(i) for i in range(n)]
        tell, addr = self.system.tell, self.addr
        start = time.perf_counter()
        for m in msgs:
            tell(addr, m)
        handled = self.system.ask(addr, Count(), 120)
        elapsed = time.perf_counter() - start
        self.expected += n
        _checked(self.name, handled, self.expected)
        return n / elapsed

    def ask_latency(self, n: int) -> float:
        ask, addr, msg = self.system.ask, self.addr, Echo(1)
        start = time.perf_counter()
        for _ in range(n):
            ask(addr, msg, 10)
        return (time.perf_counter() - start) / n

    def close(self) -> None:
        self.system.shutdown()


class RayContender:
    name = "ray"

    def __init__(self) -> None:
        import ray

        @ray.remote
        class Counter:
            def __init__(self) -> None:
                self.count = 0

            def ping(self, n: int) -> int:
                self.count += 1
                return n

            def handled(self) -> int:
                return self.count

        self.title = (
            f"a Ray {ray.__version__} actor (its own worker process, as a Ray user gets: "
            "every call is serialized and crosses processes)"
        )
        self.measures = (
            "tell = actor.ping.remote(n) with the ObjectRef dropped, sync = "
            "ray.get(actor.handled.remote()), ask = ray.get(actor.ping.remote(n)); "
            "ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)"
        )
        self.ray = ray
        self.expected = 0
        ray.init(
            num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
        )
        self.actor = Counter.remote()  # type: ignore[attr-defined]
        ray.get(self.actor.handled.remote(), timeout=120)  # the worker process is up

    def tell_rate(self, n: int) -> float:
        ping, get = self.actor.ping.remote, self.ray.get
        start = time.perf_counter()
        for i in range(n):
            ping(i)
        handled = get(self.actor.handled.remote(), timeout=120)
        elapsed = time.perf_counter() - start
        self.expected += n
        _checked(self.name, handled, self.expected)
        return n / elapsed

    def ask_latency(self, n: int) -> float:
        ping, get = self.actor.ping.remote, self.ray.get
        start = time.perf_counter()
        for _ in range(n):
            get(ping(1), timeout=10)
        elapsed = time.perf_counter() - start
        self.expected += n  # an asked ping is counted too
        return elapsed / n

    def close(self) -> None:
        self.ray.shutdown()


class AutogenContender:
    name = "autogen"

    def __init__(self) -> None:
        from autogen_core import (
            AgentId,
            MessageContext,
            RoutedAgent,
            SingleThreadedAgentRuntime,
            TopicId,
            TypeSubscription,
            message_handler,
        )

        class Counter(RoutedAgent):  # type: ignore[misc, unused-ignore]
            def __init__(self) -> None:
                super().__init__("counts pings")
                self.count = 0

            @message_handler  # type: ignore[untyped-decorator, unused-ignore]
            async def on_ping(self, message: Ping, ctx: MessageContext) -> int:
                self.count += 1
                return message.n

            @message_handler  # type: ignore[untyped-decorator, unused-ignore]
            async def on_count(self, message: Count, ctx: MessageContext) -> int:
                return self.count

        self.title = (
            f"autogen-core {importlib.metadata.version('autogen-core')} "
            "SingleThreadedAgentRuntime (one RoutedAgent; runtime, sender and agent share one "
            "event loop)"
        )
        self.measures = (
            "tell = await runtime.publish_message(Ping, topic) (autogen's fire-and-forget: "
            "returns once queued) to a topic only this agent subscribes to, sync = await "
            "runtime.send_message(Count(), agent), ask = await runtime.send_message(Ping, agent)"
        )
        self.expected = 0
        self.agent = AgentId("counter", "default")
        self.topic = TopicId("bench", "default")
        self.runtime = SingleThreadedAgentRuntime()
        self.loop = asyncio.new_event_loop()

        async def start() -> None:
            await Counter.register(self.runtime, "counter", Counter)
            await self.runtime.add_subscription(TypeSubscription("bench", "counter"))
            self.runtime.start()

        self.loop.run_until_complete(start())

    async def _tells(self, msgs: list[Any]) -> tuple[float, Any]:
        publish, send, topic = self.runtime.publish_message, self.runtime.send_message, self.topic
        start = time.perf_counter()
        for m in msgs:
            await publish(m, topic)
        handled = await send(Count(), self.agent)
        return time.perf_counter() - start, handled

    def tell_rate(self, n: int) -> float:
        elapsed, handled = self.loop.run_until_complete(self._tells([Ping(i) for i in range(n)]))
        self.expected += n
        _checked(self.name, handled, self.expected)
        return n / elapsed

    async def _asks(self, n: int) -> float:
        send, agent, msg = self.runtime.send_message, self.agent, Ping(1)
        start = time.perf_counter()
        for _ in range(n):
            await send(msg, agent)
        return (time.perf_counter() - start) / n

    def ask_latency(self, n: int) -> float:
        latency = self.loop.run_until_complete(self._asks(n))
        self.expected += n  # an asked ping is counted too
        return latency

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.runtime.close())
        finally:
            self.loop.close()


def _why_not(module: str) -> str:
    why = f"skipped, {module} is not installed"
    if module == "autogen_core":
        # Every autogen-core release pins protobuf (~=4.25 up to 0.4.0, ~=5.29 since), which
        # opentelemetry-proto and ray share with it here.
        try:
            protobuf = importlib.metadata.version("protobuf")
        except importlib.metadata.PackageNotFoundError:
            return why
        if not protobuf.startswith("5.29."):
            why += (
                f" (autogen-core pins protobuf~=5.29; this environment has protobuf {protobuf}, "
                "so installing it here would downgrade protobuf)"
            )
    return why


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def start_contenders() -> tuple[list[Contender], list[str]]:
    """Start every installed contender; returns them and a line per skipped one."""
    kinds: dict[str, Callable[[], Contender]] = {
        "thespian": ThespianContender,
        "ray": RayContender,
        "autogen_core": AutogenContender,
    }
    started: list[Contender] = []
    skipped: list[str] = []
    try:
        for module, what in CONTENDERS:
            if installed(module):
                started.append(kinds[module]())
            else:
                skipped.append(f"{what}: {_why_not(module)}")
    except BaseException:
        for contender in started:
            contender.close()
        raise
    return started, skipped


def not_compared() -> list[str]:
    """The lines a run without --contenders prints for them."""
    return [
        f"{what}: installed; compared with --contenders"
        if installed(module)
        else f"{what}: {_why_not(module)}"
        for module, what in CONTENDERS
    ]
