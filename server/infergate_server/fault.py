"""Debug fault injection: a replica that starts right and goes wrong later (issue 18, quarantine tests).

`debug.perturbOutputsAfterCalls: N` in the server's config file: after N answered infer requests, every
output this process computes (live answers and golden runs alike) is perturbed, so the periodic golden check
fails on this replica while its siblings pass. Off unless the config file sets it; no HTTP route reads or
changes it. The operator renders it only when its own debug setting allows (tests), never by default.
"""

from __future__ import annotations

import logging

import numpy as np

from .backends.base import Tensor

log = logging.getLogger(__name__)


def perturb(outputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """Every output visibly wrong: numbers moved by one, booleans flipped, BYTES elements suffixed."""
    wrong: dict[str, Tensor] = {}
    for name, array in outputs.items():
        if array.dtype == np.bool_:
            wrong[name] = np.logical_not(array)
        elif array.dtype.kind in "fiuc":
            wrong[name] = array + np.ones((), dtype=array.dtype)
        elif array.dtype.kind in "OSU":
            wrong[name] = np.array(
                [(v + b"~") if isinstance(v, bytes) else f"{v}~" for v in array.reshape(-1)], dtype=object
            ).reshape(array.shape)
        else:
            wrong[name] = array
    return wrong


class OutputFault:
    """Counts answered infer requests; from the `after_calls`-th on, `apply` perturbs outputs."""

    def __init__(self, model: str, after_calls: int) -> None:
        self.model = model
        self.after_calls = after_calls
        self.calls = 0
        log.warning(
            "model %s: debug.perturbOutputsAfterCalls=%d: this server will answer wrongly after %d infer "
            "requests (a test switch; never set it in production)",
            model,
            after_calls,
            after_calls,
        )
        if after_calls == 0:
            self._announce()

    @property
    def active(self) -> bool:
        return self.calls >= self.after_calls

    def answered(self) -> None:
        """One infer request answered (golden runs do not count)."""
        self.calls += 1
        if self.calls == self.after_calls:
            self._announce()

    def apply(self, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        return perturb(outputs) if self.active else outputs

    def _announce(self) -> None:
        log.warning("model %s: debug fault active: outputs are perturbed from now on", self.model)


__all__ = ["OutputFault", "perturb"]
