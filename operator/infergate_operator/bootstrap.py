"""What a bare cluster lacks before kopf starts watching: the operator's peering object, or kopf's CRDs.

kopf, run with a peering name, pauses every watch until its peering object exists, and does so without a
word when the kopf.dev CRDs or the object are missing. The operator therefore checks first: it creates the
missing peering object (`crds/` ships kopf's CRDs), and where it cannot (no CRDs, no permission) it runs
standalone and says so with a warning naming what to apply.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from infergate_operator.kube import ApiError, KubeClient, resource_path

LOG = logging.getLogger("infergate")
PEERING_API = "kopf.dev/v1"


@dataclass(frozen=True)
class PeeringCheck:
    """Whether peering can work; when not, why (for the warning) and the operator runs standalone."""

    standalone: bool
    why: str = ""
    created: tuple[str, ...] = ()
    """The peering objects this check created ("ClusterKopfPeering/infergate", "ns/KopfPeering/…")."""


def peering_kind(namespaces: Sequence[str]) -> tuple[str, str]:
    """kopf's choice: one ClusterKopfPeering when watching the whole cluster, a KopfPeering per namespace."""
    return ("KopfPeering", "kopfpeerings") if namespaces else ("ClusterKopfPeering", "clusterkopfpeerings")


async def _served(kube: KubeClient, plural: str) -> bool:
    try:
        group = await kube.request("GET", f"/apis/{PEERING_API}")
    except ApiError as error:
        if error.status == 404:
            return False
        raise
    return any(r.get("name") == plural for r in group.get("resources") or [])


async def ensure_peering(kube: KubeClient, name: str, namespaces: Sequence[str]) -> PeeringCheck:
    """Creates the peering object(s) named `name` where missing. API errors other than 403/404/409 are
    raised (the caller retries: the API server may not be up yet)."""
    kind, plural = peering_kind(namespaces)
    if not await _served(kube, plural):
        return PeeringCheck(
            standalone=True,
            why=f"kopf's peering CRD {plural}.kopf.dev is not installed "
            "(kubectl apply --server-side -f crds/ installs it)",
        )
    created: list[str] = []
    for namespace in namespaces or (None,):
        if await kube.get(PEERING_API, kind, namespace, name) is not None:
            continue
        body = {"apiVersion": PEERING_API, "kind": kind, "metadata": {"name": name}}
        if namespace:
            body["metadata"] = {"name": name, "namespace": namespace}
        where = f"{namespace}/{kind}/{name}" if namespace else f"{kind}/{name}"
        try:
            await kube.request("POST", resource_path(PEERING_API, kind, namespace), body=body)
        except ApiError as error:
            if error.status == 409:  # another copy created it meanwhile
                continue
            if error.status in (403, 404):
                why = f"the peering object {where} is missing and cannot be created: {error}"
                return PeeringCheck(standalone=True, why=why)
            raise
        created.append(where)
    return PeeringCheck(standalone=False, created=tuple(created))


__all__ = ["PeeringCheck", "ensure_peering", "peering_kind"]
