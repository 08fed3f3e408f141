"""Whether this operator is the one that may write, by the rule kopf's peering applies to its own watches.

kopf pauses its watch streams while a live peer has a higher priority (or the same one), but the child
watches and the periodic re-read are the operator's own (watch.py), so they ask this gate first. The gate
reads the same peering object kopf keeps (one record per operator: priority, lifetime, lastseen).
"""

from __future__ import annotations

import getpass
import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

CLUSTER = ""  # the key of the cluster-wide peering object; namespaced ones are keyed by namespace


def own_identity() -> str:
    """The id this operator announces in the peering object: the pod name in a cluster, else user@host."""
    pod = os.environ.get("POD_ID")
    if pod:
        return pod
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return f"{getpass.getuser()}@{socket.gethostname()}/{stamp}/{secrets.token_hex(2)}"


def is_active(peers: Mapping[str, Any], identity: str, priority: int, now: datetime) -> bool:
    """False while another live peer has a priority at least ours (kopf pauses then, equal ones all)."""
    for peer_id, record in peers.items():
        if peer_id == identity or not isinstance(record, Mapping):
            continue
        try:
            seen = datetime.fromisoformat(str(record["lastseen"]))
            lifetime = timedelta(seconds=int(record.get("lifetime", 60)))
            their_priority = int(record.get("priority", 0))
        except (KeyError, TypeError, ValueError):
            continue
        if seen.tzinfo is None:
            seen = seen.replace(tzinfo=UTC)
        if seen + lifetime > now and their_priority >= priority:
            return False
    return True


@dataclass
class PeeringGate:
    identity: str
    priority: int
    standalone: bool = False
    peers: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    def observe(self, scope: str, status: Mapping[str, Any] | None) -> None:
        """The peering object of `scope` (CLUSTER or a namespace) now has this status."""
        self.peers[scope] = dict(status or {})

    def active(self, scope: str, now: datetime | None = None) -> bool:
        if self.standalone:
            return True
        return is_active(self.peers.get(scope, {}), self.identity, self.priority, now or datetime.now(UTC))
