"""Bounded waits on the API server: poll a predicate until it holds or the deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None], timeout_s: float, what: str | Callable[[], str], interval_s: float = 0.2
) -> T:
    """The first truthy value of `probe()`; fails naming `what` and the last value after `timeout_s`.

    A callable `what` is called only on failure, so it can describe the state at the deadline."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout_s}s waiting for {described}; last: {last!r}")
        time.sleep(interval_s)
