"""Typed answers: a message declaring Returns[T] makes ask() a Reply[T] for mypy.

``scripts/test`` runs mypy (strict) on this file: each ``assert_type`` is checked statically,
and the test checks the same values at run time.
"""

from __future__ import annotations

from typing import Any, assert_type

from llmos.actors import Actor, LocalRef, Reply, Returns, handler, message

WAIT = 10.0


@message("typed.Add")
class Add(Returns[int]):
    a: int
    b: int


@message("typed.Name")
class Name(Returns[str]):
    pass


@message("typed.Untyped")
class Untyped:
    pass


class Calculator(Actor):
    @handler(Add)
    def add(self, msg: Add) -> int:
        return msg.a + msg.b

    @handler(Name)
    def name(self, msg: Name) -> str:
        return self.actor_name

    @handler(Untyped)
    def untyped(self, msg: Untyped) -> list[int]:
        return [1]


def test_ask_of_a_typed_message_is_a_typed_reply() -> None:
    ref: LocalRef = Calculator.start(name="calc")
    reply = assert_type(ref.ask(Add(2, 3), timeout=WAIT), Reply[int])
    total = assert_type(reply.get(), int)
    name = assert_type(ref.ask(Name(), timeout=WAIT).get(), str)
    anything = assert_type(ref.ask(Untyped(), timeout=WAIT).get(), Any)
    assert (total, name, anything) == (5, "calc", [1])
    done: list[int] = []
    reply.add_done_callback(lambda r: done.append(r.get()))  # r: Reply[int]
    assert done == [5]


async def test_ask_async_of_a_typed_message_is_typed() -> None:
    ref = Calculator.start(name="calc-async")
    total = assert_type(await ref.ask_async(Add(1, 1), timeout=WAIT), int)
    assert total == 2
    assert isinstance(Add(1, 2), Returns) and Add(1, 2) == Add(1, 2)
