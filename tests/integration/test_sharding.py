"""Three operator replicas sharing the models by shard Leases; one is SIGKILLed (issue 16).

Its models are picked up by the others within 30 s (a spec change made right after the kill reaches their
workloads), no shard is held by two replicas at once (the acquire/release record each replica logs), and
every model ends with exactly its own children, none left over.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from infergate_operator.context import ANNOTATION_CONFIG_HASH
from infergate_operator.sharding import SHARD_PREFIX, shard_of
from kubernetes import client

from tests.integration.controlplane import ControlPlane
from tests.integration.models import MODEL_LABEL, Models, minimal
from tests.integration.operator_process import OperatorProcess
from tests.integration.waiting import wait_for

SHARDS = 12
MODELS = 24
LEASE_S = 10
LINE = re.compile(
    r"^(\S+ \S+) (?:INFO|WARNING) infergate\.sharding: (acquired|released|lost) shard (\d+)", re.MULTILINE
)


@pytest.fixture
def replicas(crds: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[list[OperatorProcess]]:
    started: list[OperatorProcess] = []
    yield started
    for replica in started:
        replica.stop()


def start_replica(crds: ControlPlane, namespace: str, tmp_path: Path, i: int) -> OperatorProcess:
    env = {
        "POD_ID": f"replica-{i}",
        "INFERGATE_SHARDS": str(SHARDS),
        "INFERGATE_SHARD_NAMESPACE": namespace,
        "INFERGATE_SHARD_LEASE_SECONDS": str(LEASE_S),
        "INFERGATE_NAMESPACES": namespace,
    }
    return OperatorProcess(crds.env, tmp_path / f"replica-{i}.log", extra_env=env).start()


def holders(api: client.ApiClient, namespace: str) -> dict[int, str]:
    leases = client.CoordinationV1Api(api).list_namespaced_lease(namespace).items
    return {
        int(lease.metadata.name.removeprefix(SHARD_PREFIX)): lease.spec.holder_identity or ""
        for lease in leases
        if lease.metadata.name.startswith(SHARD_PREFIX)
    }


def config_hash(apps: client.AppsV1Api, namespace: str, name: str) -> str:
    annotations = apps.read_namespaced_deployment(name, namespace).spec.template.metadata.annotations or {}
    return str(annotations.get(ANNOTATION_CONFIG_HASH))


def ownership(log: str, replica: str, killed_at: datetime | None) -> list[tuple[int, datetime, datetime]]:
    """(shard, from, to) intervals a replica held shards, from its own log; a killed one held to its death."""
    held: dict[int, datetime] = {}
    out = []
    for stamp, what, shard in LINE.findall(log):
        at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
        if what == "acquired":
            held[int(shard)] = at
        elif int(shard) in held:
            out.append((int(shard), held.pop(int(shard)), at))
    end = killed_at or datetime.max
    out.extend((shard, since, end) for shard, since in held.items())
    return out


def test_a_killed_replicas_models_are_picked_up_by_the_others_within_30s(
    crds: ControlPlane,
    api_client: client.ApiClient,
    namespace: str,
    tmp_path: Path,
    replicas: list[OperatorProcess],
) -> None:
    models = Models(api_client, namespace)
    names = [f"m{i}" for i in range(MODELS)]
    for name in names:
        models.create(minimal(name, replicas=0))
    for i in range(3):
        replicas.append(start_replica(crds, namespace, tmp_path, i))

    def balanced() -> dict[int, str] | None:
        current = holders(api_client, namespace)
        counts = [list(current.values()).count(f"replica-{i}") for i in range(3)]
        return current if len(current) == SHARDS and counts == [4, 4, 4] else None

    wait_for(balanced, 90, "12 shards held 4/4/4 by three replicas", interval_s=1)
    for name in names:
        wait_for(
            lambda name=name: (models.get(name).get("status") or {}).get("observedGeneration") == 1,
            60,
            f"{name} converged",
        )

    victim = replicas[0]
    victims_shards = {k for k, holder in holders(api_client, namespace).items() if holder == "replica-0"}
    orphaned = [n for n in names if shard_of(namespace, n, SHARDS) in victims_shards]
    assert orphaned, "the victim held shards with models in them"
    before = {n: config_hash(models.apps, namespace, n) for n in orphaned}
    victim.kill()
    killed_at = datetime.now()
    killed = time.monotonic()
    for name in orphaned:
        models.patch(name, {"spec": {"runtime": {"requestTimeoutSeconds": 41}}})

    def picked_up() -> bool:
        return all(config_hash(models.apps, namespace, n) != before[n] for n in orphaned)

    wait_for(picked_up, 45, "the killed replica's models changed by the survivors", interval_s=0.5)
    took = time.monotonic() - killed
    assert took <= 30, f"picked up after {took:.1f} s"

    final = wait_for(
        lambda: (
            (h := holders(api_client, namespace))
            and all(v in ("replica-1", "replica-2") for v in h.values())
            and h
        ),
        30,
        "every shard held by a survivor",
    )
    assert sorted(list(final.values()).count(r) for r in ("replica-1", "replica-2")) == [6, 6]

    # Never two holders at once: per shard, the replicas' holding intervals do not overlap.
    intervals = [
        (shard, since, until, r.log_path.name)
        for i, r in enumerate(replicas)
        for shard, since, until in ownership(r.log(), f"replica-{i}", killed_at if i == 0 else None)
    ]
    for shard in range(SHARDS):
        spans = sorted((s, u, who) for k, s, u, who in intervals if k == shard)
        for (_, until, who), (since, _, next_who) in itertools.pairwise(spans):
            assert since >= until, (
                f"shard {shard}: {next_who} took it at {since} while {who} held it to {until}"
            )

    # Exactly each model's own children; nothing of a model that does not exist.
    for name in names:
        assert models.children(name) == {
            "ConfigMap": [f"{name}-config"],
            "Service": [name],
            "Deployment": [name],
        }
    owners = {
        (d.metadata.labels or {}).get(MODEL_LABEL)
        for d in models.apps.list_namespaced_deployment(namespace).items
    }
    assert owners == set(names)
