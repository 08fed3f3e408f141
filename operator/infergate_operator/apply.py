"""The one writer of children: server-side apply of what the builders desire, deletion of what they don't.

Hand edits (kubectl edit/patch/apply) are overwritten: a field conflict with a human tool is forced.
A conflict with another controller is not forced — that would be a tug of war — and is reported instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from infergate_operator.kube import ApiError, KubeClient

# Managers that are people at a terminal, not controllers: their edits to our fields are repaired.
HUMAN_MANAGERS = re.compile(
    r"^(kubectl.*|kubectl-client-side-apply|kubectl-edit|kubectl-patch|k9s|Mozilla.*)$"
)
_CONFLICT_MANAGER = re.compile(r'conflicts? with "([^"]+)"')


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


async def apply_child(
    kube: KubeClient, obj: dict[str, Any]
) -> tuple[dict[str, Any] | None, FieldConflict | None]:
    """Applies without force first; forces only over human managers."""
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
