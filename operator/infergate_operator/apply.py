"""The one writer of children: server-side apply of what the builders desire, deletion of what they don't.

Hand edits (kubectl edit/patch/apply) are overwritten: a field conflict with a human tool is forced.
A conflict with another controller is not forced — that would be a tug of war — and is reported instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from infergate_operator.kube import FIELD_MANAGER, ApiError, KubeClient

# Managers that are people at a terminal, not controllers: their edits to our fields are repaired.
HUMAN_MANAGERS = re.compile(
    r"^(kubectl.*|kubectl-client-side-apply|kubectl-edit|kubectl-patch|k9s|Mozilla.*)$"
)
_CONFLICT_MANAGER = re.compile(r'conflicts? with "([^"]+)"')
_CONFLICT_FIELD = re.compile(r"(?<![\w/])(\.[A-Za-z][\w.\[\]=\"-]*)")
# Who writes a workload's replicas for an autoscaler (the HPA controller; KEDA for 0 <-> 1), and our own
# hand-over manager. Once the spec owns scale again (autoscaling removed), their replicas are taken back.
AUTOSCALER_MANAGERS = re.compile(r"^(kube-controller-manager|keda(-operator)?|infergate-handover)$")
HANDOVER_MANAGER = "infergate-handover"
WORKLOAD_KINDS = ("Deployment", "Rollout")


@dataclass(frozen=True)
class FieldConflict:
    """Another controller owns a field we want; we leave it and say so in status."""

    child: str  # Kind/name
    managers: tuple[str, ...]
    message: str


class ChildRejectedError(Exception):
    """The API server refused a built child (422): a bug or an input the validation missed."""

    def __init__(self, child: str, message: str) -> None:
        super().__init__(f"{child}: {message}")
        self.child = child


def child_name(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def conflicting_managers(message: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_CONFLICT_MANAGER.findall(message)))


def conflicting_fields(message: str) -> set[str]:
    """Field paths named in a 409 apply conflict (`.spec.replicas`)."""
    return set(_CONFLICT_FIELD.findall(message.split(":", 1)[-1]))


def takes_back_replicas(obj: dict[str, Any], managers: tuple[str, ...], message: str) -> bool:
    """Autoscaling was turned off: the spec owns replicas again, and only an autoscaler's last write of
    them stands in the way (nothing else of another controller is ever forced)."""
    return (
        obj["kind"] in WORKLOAD_KINDS
        and "replicas" in obj.get("spec", {})
        and bool(managers)
        and all(AUTOSCALER_MANAGERS.match(m) or HUMAN_MANAGERS.match(m) for m in managers)
        and conflicting_fields(message) == {".spec.replicas"}
    )


def owns_replicas(live: dict[str, Any], manager: str) -> bool:
    """Whether `manager` holds .spec.replicas of `live` by apply (its managedFields)."""
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        spec = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if entry.get("manager") == manager and entry.get("operation") == "Apply" and "f:replicas" in spec:
            return True
    return False


async def hand_over_replicas(kube: KubeClient, obj: dict[str, Any]) -> None:
    """Autoscaling was turned on: our apply is about to leave `replicas` out. Were we their only owner, the
    API server would drop the field and default it to 1 (a drop in capacity before the autoscaler acts).
    A second manager first applies the live count, so the field stays until the autoscaler writes it."""
    if obj["kind"] not in WORKLOAD_KINDS or "replicas" in obj.get("spec", {}):
        return
    meta = obj["metadata"]
    live = await kube.get(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
    if live is None or not owns_replicas(live, FIELD_MANAGER) or owns_replicas(live, HANDOVER_MANAGER):
        return
    replicas = (live.get("spec") or {}).get("replicas")
    if replicas is None:
        return
    handover = {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {"replicas": replicas},
    }
    await kube.apply(handover, force=True, field_manager=HANDOVER_MANAGER)


async def apply_child(
    kube: KubeClient, obj: dict[str, Any]
) -> tuple[dict[str, Any] | None, FieldConflict | None]:
    """Applies without force first; forces only over human managers, and over an autoscaler's replicas
    once the spec owns them again."""
    await hand_over_replicas(kube, obj)
    try:
        return await kube.apply(obj, force=False), None
    except ApiError as error:
        if error.status == 422:
            raise ChildRejectedError(child_name(obj), error.message) from error
        if error.status != 409:
            raise
        managers = conflicting_managers(error.message)
        if managers and all(HUMAN_MANAGERS.match(m) for m in managers):
            return await kube.apply(obj, force=True), None
        if takes_back_replicas(obj, managers, error.message):
            return await kube.apply(obj, force=True), None
        return None, FieldConflict(child_name(obj), managers, error.message)


def drifted(desired: Any, live: Any) -> bool:
    """True when `live` lacks or differs from any field that `desired` sets (extra live fields are fine)."""
    if live is None and desired in (False, 0, "", [], {}):
        return False  # the API server leaves zero values out of what it returns
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return True
        return any(drifted(value, live.get(key)) for key, value in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return True
        return any(drifted(d, item) for d, item in zip(desired, live, strict=True))
    if isinstance(desired, bool) or live is None:
        return bool(desired != live)
    if isinstance(desired, (int, float)) and isinstance(live, (int, float)):
        return float(desired) != float(live)
    return bool(str(desired) != str(live))
