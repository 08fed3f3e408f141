"""Request work too big for the event loop: decoding and encoding large bodies, tokenizing long texts.

The loop answers /healthz and fires deadlines; a 16 MiB JSON body or millions of BYTES items decoded on
it stall both for seconds. Work over `INLINE_BYTES` goes to a small pool of its own (so it neither
queues behind nor starves the runtime's threads); smaller work stays inline, where a thread hop would
cost more than the work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

INLINE_BYTES = 64 * 1024
"""Bodies, responses (by array bytes) and text batches up to this size are handled on the loop."""


class Codec:
    def __init__(self, workers: int = 2) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="codec")

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
