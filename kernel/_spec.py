"""Child specs and backoff: how a supervisor rebuilds a child, and how long it waits first.

These are plain frozen records, checked when they are made, so a bad spec fails where it is
written rather than at the first crash.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping
from typing import Any, Literal

from llmos.actors import Actor, WhenFull
from llmos.kernel._errors import SupervisionError

__all__ = ["RESTART_TYPES", "STRATEGIES", "Backoff", "ChildSpec", "Restart", "Strategy"]

Restart = Literal["permanent", "transient", "temporary"]
"""When a failed child is restarted.

- ``permanent``: after every failure.
- ``transient``: after every failure except a normal exit (``SystemExit`` with code 0 or None
  raised in a handler), after which it stops for good.
- ``temporary``: never; a failed child stops for good (its watchers get ``Terminated``).

A child stopped with ``stop()`` stays stopped whatever its type (unlike OTP, where a permanent
child is restarted even after a normal exit).
"""

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
"""Which children a supervisor restarts when one fails.

- ``one_for_one``: only the failed child.
- ``one_for_all``: every child (they depend on each other).
- ``rest_for_one``: the failed child and every child started after it.
"""

RESTART_TYPES: tuple[str, ...] = ("permanent", "transient", "temporary")
STRATEGIES: tuple[str, ...] = ("one_for_one", "one_for_all", "rest_for_one")


def _check_seconds(what: str, value: float, *, positive: bool = False) -> None:
    bad = (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
        or (positive and value == 0)
    )
    if bad:
        kind = "a positive" if positive else "a non-negative"
        raise SupervisionError(f"{what} must be {kind} finite number of seconds, got {value!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter between restarts of one child.

    The first restart after a stable period is immediate (as in OTP, which has no backoff);
    each further restart waits ``min``, ``min * factor``, ``min * factor**2`` ... seconds, at
    most ``max``, each spread by +/- ``jitter`` (a fraction) so crashed siblings do not all come
    back at once. Once a child has run ``reset_after`` seconds since its last restart, its next
    failure counts as the first again.

    Attributes:
        min: the wait before the second consecutive restart.
        max: the longest wait.
        factor: growth per consecutive restart (>= 1).
        jitter: random spread, a fraction in [0, 1).
        reset_after: seconds of stable running that reset the sequence.
    """

    min: float = 0.01
    max: float = 5.0
    factor: float = 2.0
    jitter: float = 0.1
    reset_after: float = 10.0

    def __post_init__(self) -> None:
        _check_seconds("Backoff.min", self.min)
        _check_seconds("Backoff.max", self.max)
        _check_seconds("Backoff.reset_after", self.reset_after)
        if self.max < self.min:
            raise SupervisionError(
                f"Backoff.max ({self.max}) is below Backoff.min ({self.min}); swap them"
            )
        if not isinstance(self.factor, int | float) or not 1 <= self.factor < math.inf:
            raise SupervisionError(
                f"Backoff.factor must be a finite number >= 1, got {self.factor!r}"
            )
        if not isinstance(self.jitter, int | float) or not 0 <= self.jitter < 1:
            raise SupervisionError(f"Backoff.jitter must be in [0, 1), got {self.jitter!r}")

    @classmethod
    def none(cls) -> Backoff:
        """No waiting at all: every restart is immediate (crash loops are then bounded only by
        restart intensity)."""
        return cls(min=0.0, max=0.0, jitter=0.0)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before restart number ``attempt`` (0 = first after a stable period)."""
        if attempt <= 0 or self.max == 0:
            return 0.0
        base = min(self.max, self.min * self.factor ** min(attempt - 1, 64))
        if self.jitter:
            spread = (rng or random).uniform(-self.jitter, self.jitter)
            base *= 1.0 + spread
        return min(self.max, max(0.0, base))


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class ChildSpec:
    """How to build (and rebuild) one supervised actor.

    Attributes:
        actor_class: the :class:`~llmos.actors.Actor` subclass to start.
        args: positional arguments for its constructor.
        kwargs: keyword arguments for its constructor.
        name: its name (None: the core picks ``ClassName-N``, which is then kept across
            restarts).
        restart: ``permanent``, ``transient`` or ``temporary`` (see :data:`Restart`).
        restart_on_ask_error: also fail (and restart) the actor when the handler of an ask
            raises; by default the error only goes back to the asker and is counted.
        capacity: mailbox bound (None: the class's ``actor_mailbox_capacity``).
        when_full: mailbox policy (None: the class's ``actor_when_full``).
    """

    actor_class: type[Actor]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    name: str | None = None
    restart: Restart = "permanent"
    restart_on_ask_error: bool = False
    capacity: int | None = None
    when_full: WhenFull | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.actor_class, type) or not issubclass(self.actor_class, Actor):
            raise SupervisionError(
                f"a child spec needs an llmos.actors.Actor subclass, got {self.actor_class!r}"
            )
        if self.restart not in RESTART_TYPES:
            raise SupervisionError(
                f"restart must be one of {', '.join(RESTART_TYPES)}, got {self.restart!r}"
            )
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise SupervisionError(f"a child name must be a non-empty str, got {self.name!r}")
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "kwargs", dict(self.kwargs))

    def build(self) -> Actor:
        """A fresh instance (called in the thread that starts or restarts the child)."""
        return self.actor_class(*self.args, **self.kwargs)

    def named(self, name: str) -> ChildSpec:
        """The same spec with its name fixed (what a supervisor keeps after the first start)."""
        return dataclasses.replace(self, name=name)

    def __repr__(self) -> str:
        name = self.name or "?"
        return f"ChildSpec({self.actor_class.__name__}, name={name!r}, restart={self.restart!r})"
