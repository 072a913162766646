"""Input validation: a message's field types (against its annotations) and its sizes.

:func:`check_input` is what :class:`~llmos.agents.Agent` runs on every message before its
handler (``Agent.agent_validate``); it is a plain function, usable on its own.
"""

from __future__ import annotations

import typing
from typing import Any, ClassVar

from llmos.agents._errors import AgentError

__all__ = ["check_input"]


_hints_cache: dict[type[Any], dict[str, Any] | None] = {}


def _field_hints(cls: type[Any]) -> dict[str, Any] | None:
    if cls not in _hints_cache:
        try:
            _hints_cache[cls] = typing.get_type_hints(cls)
        except Exception:  # unresolvable annotations: check sizes only
            _hints_cache[cls] = None
    return _hints_cache[cls]


def _conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits a field annotation (loosely: containers are checked one level)."""
    if hint is Any or isinstance(hint, typing.TypeVar):
        return True
    origin = typing.get_origin(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(_conforms(value, arg) for arg in typing.get_args(hint))
    if origin is not None:
        hint = origin
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (list, tuple):  # msgpack turns tuples into lists: accept either
        return isinstance(value, list | tuple)
    if hint is ClassVar:
        return True
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def check_input(msg: Any, max_chars: int, max_items: int, agent: str = "this agent") -> None:
    """Check a message's field types (against its annotations) and its sizes.

    Args:
        msg: the message.
        max_chars: the longest str allowed anywhere in it.
        max_items: the most items allowed in any list or dict in it.
        agent: who checks, for the error message.

    Raises:
        AgentError: naming the field, what is wrong and which limit to raise.
    """
    cls = type(msg)
    fields = getattr(cls, "__llmos_fields__", None)
    if fields is not None:
        hints = _field_hints(cls) or {}
        for name in fields:
            value = getattr(msg, name)
            hint = hints.get(name)
            if hint is not None and not _conforms(value, hint):
                raise AgentError(
                    f"{agent} refused {cls.__name__}: field {name!r} must be "
                    f"{_hint_name(hint)}, got {type(value).__name__} {value!r:.60}; send the "
                    "right type"
                )
            _check_size(value, f"{cls.__name__}.{name}", max_chars, max_items, agent)
    else:
        _check_size(msg, cls.__name__, max_chars, max_items, agent)


def _hint_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _check_size(value: Any, where: str, max_chars: int, max_items: int, agent: str) -> None:
    if isinstance(value, str | bytes):
        if len(value) > max_chars:
            raise AgentError(
                f"{agent} refused {where}: {len(value)} characters, over its limit of "
                f"{max_chars}; shorten the text or raise agent_max_text_chars"
            )
    elif isinstance(value, list | tuple | dict):
        if len(value) > max_items:
            raise AgentError(
                f"{agent} refused {where}: {len(value)} items, over its limit of {max_items}; "
                "send fewer or raise agent_max_items"
            )
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if not isinstance(item, int | float | bool | type(None)):
                _check_size(item, f"{where}[{key!r}]", max_chars, max_items, agent)
    elif getattr(type(value), "__llmos_fields__", None) is not None:
        for name in type(value).__llmos_fields__:
            _check_size(getattr(value, name), f"{where}.{name}", max_chars, max_items, agent)
