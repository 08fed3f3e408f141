"""Fair shares of a model's queue between clients (tenants when keys are configured, else peer addresses).

While the queue has room anyone is admitted. Once it is full, a client holding fewer than its share
(maxQueueDepth divided among the clients holding requests now, itself included) is still admitted, up
to twice the bound, and one at or over its share gets 429. So a client with 80 connections cannot keep
another's requests out: it is the one turned away. Two dict operations per request.
"""

from __future__ import annotations


class FairShare:
    def __init__(self, max_queue_depth: int) -> None:
        self._bound = max_queue_depth
        self._held: dict[str, int] = {}

    def admit(self, client: str, queue_full: bool) -> bool:
        """Whether `client` may add a request now; if so it is counted until `release`."""
        held = self._held.get(client, 0)
        if queue_full:
            clients = len(self._held) + (0 if held else 1)
            if held >= max(1, self._bound // clients):
                return False
        self._held[client] = held + 1
        return True

    def release(self, client: str) -> None:
        held = self._held.get(client, 0) - 1
        if held > 0:
            self._held[client] = held
        else:
            self._held.pop(client, None)

    def holding(self, client: str) -> int:
        return self._held.get(client, 0)
