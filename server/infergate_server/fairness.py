"""Fair shares of a model's queue between clients (tenants when keys are configured, else peer addresses).

While the queue has room anyone is admitted. Once it is full, a client holding fewer than its share
(maxQueueDepth divided among the clients holding requests now, itself included) is still admitted, up
to twice the bound, and one at or over its share gets 429. The share is asked again when the request
is queued, since the queue may have filled while its body was read. So a client with 80 connections
cannot keep another's requests out: it is the one turned away. A few dict operations per request.
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

    def under_share(self, client: str) -> bool:
        """Whether `client` (already admitted) holds no more than its share while others hold requests
        too: then its request may go past the queue's bound (the queue may have filled since admission)."""
        clients = len(self._held)
        return clients > 1 and self._held.get(client, 0) <= max(1, self._bound // clients)
