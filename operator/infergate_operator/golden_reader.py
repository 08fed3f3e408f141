"""Reads servers' golden reports over HTTP: `GET <address>/v2/models/{model}/golden`, short timeouts.

The only module that talks to model servers. Every failure becomes a short, stable reason ("timed out
after 2 s", "connection refused", "HTTP 404"), never an exception: an unreadable server is a fact to report.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from infergate_operator.golden import PodRead

USER_AGENT = "infergate-operator"


def golden_url(address: str, model: str) -> str:
    """`address` is `http://host:port` (golden.pod_address); `model` the served model's name."""
    return f"{address.rstrip('/')}/v2/models/{quote(model, safe='')}/golden"


def _reason(error: BaseException, timeout_s: float) -> str:
    if isinstance(error, TimeoutError):
        return f"timed out after {timeout_s:g} s"
    if isinstance(error, aiohttp.ClientConnectorError):
        number = error.os_error.errno if error.os_error is not None else None
        return os.strerror(number).lower() if number else "cannot connect"
    if isinstance(error, aiohttp.ClientResponseError):
        return f"HTTP {error.status}"
    if isinstance(error, ValueError):
        return "the answer is not a JSON object"
    return type(error).__name__


class GoldenReader:
    """One pooled HTTP session for all reads; `concurrency` bounds the reads in flight at once."""

    def __init__(self, *, timeout_s: float = 2.0, concurrency: int = 16) -> None:
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # One connection per read: pods come and go, idle keep-alives to them would pile up.
                connector=aiohttp.TCPConnector(limit=self._concurrency, force_close=True),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=self.timeout_s),
                headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            )
        return self._session

    async def fetch(self, address: str, model: str) -> tuple[Mapping[str, Any] | None, str]:
        """(the report, "") or (None, why it could not be read)."""
        async with self._slots:
            try:
                async with self._client().get(golden_url(address, model)) as response:
                    response.raise_for_status()
                    report = orjson.loads(await response.read())
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                return None, _reason(error, self.timeout_s)
        if not isinstance(report, dict):
            return None, "the answer is not a JSON object"
        return report, ""

    async def read(self, pod: str, address: str, model: str) -> PodRead:
        report, error = await self.fetch(address, model)
        return PodRead(pod=pod, address=address, at=time.time(), report=report, error=error)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


__all__ = ["GoldenReader", "golden_url"]
