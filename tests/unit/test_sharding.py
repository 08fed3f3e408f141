"""Shard planning across replicas: stable hashing, fair shares, only free or expired Leases taken."""

from __future__ import annotations

from collections import Counter

from infergate_operator.sharding import ShardView, fair_share, plan, shard_of


def test_a_models_shard_is_stable_and_models_spread_over_all_shards() -> None:
    assert shard_of("team-a", "m1", 12) == shard_of("team-a", "m1", 12)
    counts = Counter(shard_of(f"team-{i % 7}", f"m{i}", 12) for i in range(6000))
    assert set(counts) == set(range(12))
    assert max(counts.values()) < 1.2 * min(counts.values())


def test_fair_shares_add_up_and_differ_by_at_most_one() -> None:
    members = ["a", "b", "c"]
    shares = [fair_share(m, members, 16) for m in members]
    assert sum(shares) == 16
    assert max(shares) - min(shares) <= 1


def test_a_new_replica_takes_only_free_or_expired_shards() -> None:
    views = {k: ShardView("a" if k < 6 else "b", expired=False) for k in range(12)}
    views[3] = ShardView("a", expired=True)
    acquire, release = plan("c", ["a", "b", "c"], views, 12)
    assert (acquire, release) == ([3], [])


def test_a_replica_above_its_share_gives_back_the_excess() -> None:
    views = {k: ShardView("a" if k < 6 else "b", expired=False) for k in range(12)}
    acquire, release = plan("a", ["a", "b", "c"], views, 12)
    assert acquire == []
    assert release == [4, 5]


def test_the_survivors_take_over_a_dead_replicas_shards_once_they_expire() -> None:
    views = {k: ShardView("abc"[k % 3], expired=k % 3 == 2) for k in range(12)}
    took_a, _ = plan("a", ["a", "b"], views, 12)
    views.update({k: ShardView("a", expired=False) for k in took_a})
    took_b, _ = plan("b", ["a", "b"], views, 12)
    assert sorted(took_a + took_b) == [k for k in range(12) if k % 3 == 2]
    assert not set(took_a) & set(took_b)
