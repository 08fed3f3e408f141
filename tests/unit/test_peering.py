"""The peering gate follows kopf's rule: pause while a live peer has a priority at least ours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from infergate_operator.peering import CLUSTER, PeeringGate, is_active

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def record(priority: int, seen_ago_s: float = 1, lifetime: int = 60) -> dict[str, object]:
    return {
        "priority": priority,
        "lifetime": lifetime,
        "lastseen": (NOW - timedelta(seconds=seen_ago_s)).isoformat(),
    }


def test_alone_is_active() -> None:
    assert is_active({"me": record(5)}, "me", 5, NOW)
    assert is_active({}, "me", 5, NOW)


def test_a_live_peer_with_higher_priority_pauses_us() -> None:
    assert not is_active({"me": record(5), "them": record(9)}, "me", 5, NOW)


def test_equal_priority_pauses_both_like_kopf() -> None:
    peers = {"me": record(5), "them": record(5)}
    assert not is_active(peers, "me", 5, NOW)
    assert not is_active(peers, "them", 5, NOW)


def test_lower_priority_peer_does_not_pause_us() -> None:
    assert is_active({"me": record(9), "them": record(5)}, "me", 9, NOW)


def test_a_dead_peer_no_longer_counts() -> None:
    assert is_active({"them": record(9, seen_ago_s=61, lifetime=60)}, "me", 5, NOW)
    assert not is_active({"them": record(9, seen_ago_s=59, lifetime=60)}, "me", 5, NOW)


def test_unreadable_records_are_ignored() -> None:
    assert is_active({"them": {"priority": "high"}, "other": "junk"}, "me", 5, NOW)


def test_gate_keeps_one_view_per_scope_and_standalone_never_pauses() -> None:
    gate = PeeringGate(identity="me", priority=5)
    gate.observe(CLUSTER, {"them": record(9)})
    assert not gate.active(CLUSTER, NOW)
    assert gate.active("team-a", NOW)
    gate.observe(CLUSTER, None)
    assert gate.active(CLUSTER, NOW)
    assert PeeringGate(identity="me", priority=1, standalone=True).active(CLUSTER, NOW)
