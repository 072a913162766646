"""Typed messages and the check that keeps every message encodable for the wire.

A message is plain msgpack data (None, bool, int, float, str, bytes, list, tuple, dict with str,
int or bytes keys), an :class:`~llmos.actors.ActorRef`, or an instance of a class declared with
:func:`message`: a small frozen dataclass with a stable wire name. Nothing else is accepted,
locally or remotely, so a program that works on one node works across nodes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform

from llmos.actors._errors import MessageError, UnknownMessageType
from llmos.actors._ref import ActorRef

__all__ = [
    "MAX_DEPTH",
    "Terminated",
    "check_message",
    "message",
    "message_class",
    "message_fields",
    "wire_name",
]

T = TypeVar("T")
A = TypeVar("A")

MAX_DEPTH = 32
"""Deepest nesting of lists, tuples, dicts and message fields accepted in one message."""

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1

_REGISTRY: dict[str, type[Any]] = {}
_SCALARS: frozenset[type[Any]] = frozenset({type(None), bool, float, str, bytes})
_KEYS: frozenset[type[Any]] = frozenset({str, int, bytes})
# For each message class, its fast check (see _flat_check).
_FLAT_CHECKS: dict[type[Any], Callable[[Any], bool]] = {}


def _flat_check(names: tuple[str, ...]) -> Callable[[Any], bool]:
    """A function telling whether every field of a message is a flat scalar (an int within
    64 bits, or None, bool, float, str, bytes): the fast path of :func:`check_message`.

    Written out per class, as dataclasses writes ``__init__``: one attribute read and one or
    two type tests per field, a third of the cost of a generic loop over the fields. The names
    are the dataclass's own field names, so they are identifiers.
    """
    lines = ["def check(m):"]
    for name in names:
        lines += [
            f"    v = m.{name}",
            "    t = type(v)",
            "    if t not in scalars and (t is not int or not low <= v <= high):",
            "        return False",
        ]
    lines.append("    return True")
    scope: dict[str, Any] = {"scalars": _SCALARS, "low": _INT_MIN, "high": _INT_MAX}
    exec("\n".join(lines), scope)  # names are identifiers (see docstring)
    check: Callable[[Any], bool] = scope["check"]
    return check


@dataclass_transform(frozen_default=True)
def message(wire_name: str, *, local_only: bool = False) -> Callable[[type[T]], type[T]]:
    """Declare a message class: a frozen, slotted dataclass registered under a stable wire name.

    Example::

        @message("demo.Greet")
        class Greet:
            text: str
            times: int = 1

    Args:
        wire_name: the name this class travels under between nodes. Keep it stable across
            versions of your program; two classes may not share one.
        local_only: the class is internal to one process (a kernel's or a pool's own
            bookkeeping): it is never sent to another node, and a node refuses it when a
            peer sends it (``llmos.transport.NotAllowed``).

    Only the class itself travels under ``wire_name``: an undecorated subclass of it is not a
    message (declare it with its own ``@message``), so what arrives is always what was sent.

    Returns:
        A decorator that turns the class into the registered message class.

    Raises:
        MessageError: if the wire name is empty or already taken by another class.
    """
    if not isinstance(wire_name, str) or not wire_name:
        raise MessageError(f"a message wire name must be a non-empty str, got {wire_name!r}")

    def decorate(cls: type[T]) -> type[T]:
        taken = _REGISTRY.get(wire_name)
        if taken is not None and taken.__qualname__ != cls.__qualname__:
            raise MessageError(
                f"wire name {wire_name!r} is already used by {taken.__module__}."
                f"{taken.__qualname__}; give {cls.__qualname__} a different one"
            )
        data_cls = dataclasses.dataclass(frozen=True, slots=True)(cls)
        data_cls.__llmos_wire_name__ = wire_name  # type: ignore[attr-defined]
        data_cls.__llmos_local_only__ = bool(local_only)  # type: ignore[attr-defined]
        data_cls.__llmos_fields__ = tuple(  # type: ignore[attr-defined]
            f.name
            for f in dataclasses.fields(data_cls)  # type: ignore[arg-type]
        )
        _REGISTRY[wire_name] = data_cls
        _FLAT_CHECKS[data_cls] = _flat_check(data_cls.__llmos_fields__)  # type: ignore[attr-defined]
        return data_cls

    return decorate


def wire_name(msg_type: type[Any]) -> str | None:
    """The wire name of a registered message class, or None for any other type (an
    undecorated subclass of a message class included)."""
    name: str | None = getattr(msg_type, "__llmos_wire_name__", None)
    if name is None or _REGISTRY.get(name) is not msg_type:
        return None
    return name


def message_fields(msg: Any) -> dict[str, Any]:
    """The fields of a registered message instance as a dict (no deep copy)."""
    return {name: getattr(msg, name) for name in type(msg).__llmos_fields__}


def message_class(name: str) -> type[Any]:
    """Look up a registered message class by wire name.

    Raises:
        UnknownMessageType: if no class is registered under that name in this process.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownMessageType(
            f"no message class is registered under wire name {name!r}; import the module "
            "that declares it on this node"
        ) from None


def check_message(msg: Any) -> None:
    """Check that ``msg`` can travel as a message, locally or to another node.

    Raises:
        MessageError: naming the first value that has no wire form and where it sits.
    """
    cls = type(msg)
    if cls in _SCALARS:
        return
    flat = _FLAT_CHECKS.get(cls)
    if flat is not None and flat(msg):
        return  # the fast path: a message whose fields are all flat scalars
    _check(msg, 0, "message")


def _check(value: Any, depth: int, where: str) -> None:
    if depth > MAX_DEPTH:
        raise MessageError(f"{where} nests deeper than {MAX_DEPTH} levels; flatten it")
    cls = type(value)
    if cls in _SCALARS:
        return
    if cls is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise MessageError(f"{where}: int {value} does not fit in 64 bits; send it as a str")
        return
    # The path string for error messages is only built when descending into a container.
    if cls is list or cls is tuple:
        for i, item in enumerate(value):
            if type(item) not in _SCALARS:
                _check(item, depth + 1, f"{where}[{i}]")
        return
    if cls is dict:
        for key, item in value.items():
            if type(key) not in _KEYS:
                raise MessageError(
                    f"{where}: dict key {key!r} of type {type(key).__name__} has no wire form; "
                    "use str, int or bytes keys"
                )
            if type(item) not in _SCALARS:
                _check(item, depth + 1, f"{where}[{key!r}]")
        return
    fields = getattr(cls, "__llmos_fields__", None)
    name = getattr(cls, "__llmos_wire_name__", None)
    if fields is not None and name is not None and _REGISTRY.get(name) is cls:
        for name in fields:
            item = getattr(value, name)
            if type(item) not in _SCALARS:
                _check(item, depth + 1, f"{where}.{name}")
        return
    if isinstance(value, ActorRef):
        return
    if name is not None:
        raise MessageError(
            f"{where} is a {cls.__module__}.{cls.__qualname__}, a subclass of the message class "
            f"{name!r} that needs its own @message to be sent (a message travels as exactly "
            "its own class)"
        )
    raise MessageError(
        f"{where} is a {cls.__module__}.{cls.__qualname__}, which cannot be sent: messages are "
        "msgpack data (None, bool, int, float, str, bytes, list, tuple, dict), actor refs, or "
        "classes declared with @llmos.actors.message(...)"
    )


@message("llmos.Terminated")
class Terminated:
    """Delivered to every watcher of an actor when that actor stops for good.

    Attributes:
        ref: the ref of the actor that stopped.
        reason: "stopped" for a normal stop, otherwise a short description of the failure.
    """

    ref: Any
    reason: str = "stopped"
