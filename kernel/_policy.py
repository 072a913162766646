"""Supervision policy as plain functions and classes: no threads, no actors, easy to test.

- :class:`RestartWindow` counts restarts in a sliding window (restart intensity);
- :func:`should_restart` applies a child's restart type to a failure;
- :func:`restart_group` applies a strategy: which children go down and come back together;
- :func:`give_up_error` says what happened when the budget is spent, and what to do.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

from llmos.kernel._errors import SupervisionError

__all__ = ["RestartWindow", "give_up_error", "is_normal_exit", "restart_group", "should_restart"]


class RestartWindow:
    """At most ``max_restarts`` restarts within any ``within`` seconds (OTP's intensity/period).

    Args:
        max_restarts: restarts allowed in the window (0: none, the first failure gives up).
        within: the window, in seconds.
    """

    __slots__ = ("_times", "max_restarts", "within")

    def __init__(self, max_restarts: int, within: float) -> None:
        if not isinstance(max_restarts, int) or isinstance(max_restarts, bool) or max_restarts < 0:
            raise SupervisionError(f"max_restarts must be an int >= 0, got {max_restarts!r}")
        if not isinstance(within, int | float) or isinstance(within, bool) or not within > 0:
            raise SupervisionError(f"within must be a positive number of seconds, got {within!r}")
        self.max_restarts = max_restarts
        self.within = float(within)
        self._times: collections.deque[float] = collections.deque()

    def allow(self, now: float) -> bool:
        """Record a restart at ``now``; False if that is one too many for the window."""
        times = self._times
        times.append(now)
        horizon = now - self.within
        while times and times[0] <= horizon:
            times.popleft()
        return len(times) <= self.max_restarts

    def count(self, now: float) -> int:
        """Restarts recorded within the window ending at ``now``."""
        horizon = now - self.within
        return sum(1 for t in self._times if t > horizon)


def is_normal_exit(error: BaseException | None) -> bool:
    """True for ``SystemExit`` with code 0 or None: an actor asked to end, it did not crash."""
    return isinstance(error, SystemExit) and error.code in (0, None)


def should_restart(restart: str, error: BaseException | None) -> bool:
    """Whether a child of restart type ``restart`` is restarted after ``error``."""
    if restart == "permanent":
        return True
    if restart == "transient":
        return not is_normal_exit(error)
    return False


def restart_group(strategy: str, order: Sequence[str], failed: str) -> list[str]:
    """The children to restart together, in start order, when ``failed`` fails.

    Args:
        strategy: ``one_for_one``, ``one_for_all`` or ``rest_for_one``.
        order: the supervisor's children in the order they were started.
        failed: the name of the child that failed.
    """
    if strategy == "one_for_one" or failed not in order:
        return [failed]
    if strategy == "one_for_all":
        return list(order)
    if strategy == "rest_for_one":
        return list(order[order.index(failed) :])
    raise SupervisionError(f"unknown strategy {strategy!r}")


def give_up_error(
    supervisor: str,
    child: str,
    error: BaseException,
    window: RestartWindow,
    escalate: bool,
    shared: bool,
) -> SupervisionError:
    """The error a supervisor reports when a restart would exceed its intensity.

    Args:
        supervisor: its name; child: the child that failed last; error: that failure.
        window: the budget that is spent.
        escalate: True if the supervisor now stops all children and fails itself.
        shared: True if the budget is shared by all children (else it is the child's own).
    """
    scope = "its children together" if shared else f"child {child!r}"
    problem = (
        f"supervisor {supervisor!r} gave up: {scope} needed more than {window.max_restarts} "
        f"restart(s) within {window.within:g} s; the last failure was {child!r}: {error!r}"
    )
    if escalate:
        advice = (
            "Its children are stopped and the failure goes to its own supervisor; fix the "
            "child or raise max_restarts/within"
        )
    else:
        advice = "That child is stopped for good; fix it or raise max_restarts/within"
    err = SupervisionError(f"{problem}. {advice}")
    err.__cause__ = error
    return err
