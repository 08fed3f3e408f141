"""ChildIndex: a converge skips deleting only children the watches have listed and never seen."""

from __future__ import annotations

from infergate_operator.watch import ChildIndex, KindWatch


def watch(kind: str, namespace: str | None = None, listed: bool = True) -> KindWatch:
    w = KindWatch(kube=None, api_version="v1", kind=kind, on_change=lambda c: None, namespace=namespace)  # type: ignore[arg-type]
    w._listed = listed
    return w


def test_an_unlisted_or_unwatched_kind_may_have_anything() -> None:
    index = ChildIndex()
    index.add(watch("Service", listed=False))
    assert index.may_exist("Service", "ns", "a")
    assert index.may_exist("PodDisruptionBudget", "ns", "a")


def test_a_listed_kind_knows_what_exists() -> None:
    index = ChildIndex()
    services = watch("Service")
    services.versions[("ns", "a")] = ("17", "a")
    index.add(services)
    assert index.may_exist("Service", "ns", "a")
    assert not index.may_exist("Service", "ns", "b")
    assert not index.may_exist("Service", "other", "a")


def test_namespaced_watches_answer_for_their_namespace() -> None:
    index = ChildIndex()
    team = watch("Service", namespace="team-a")
    team.versions[("team-a", "x")] = ("3", "x")
    index.add(team)
    assert index.may_exist("Service", "team-a", "x")
    assert not index.may_exist("Service", "team-a", "y")
    assert index.may_exist("Service", "team-b", "y"), "no watch covers team-b: it may exist"


def test_version_is_known_only_after_listing() -> None:
    index = ChildIndex()
    services = watch("Service", listed=False)
    services.versions[("ns", "a")] = ("17", "a")
    index.add(services)
    assert index.version("Service", "ns", "a") is None
    services._listed = True
    assert index.version("Service", "ns", "a") == "17"
    assert index.version("Service", "ns", "b") is None
