"""status.startup from what the current revision's servers report: only well-formed values, by pod."""

from __future__ import annotations

from infergate_operator.golden import PodRead, PodTarget
from infergate_operator.spec import InferenceModelStatus
from infergate_operator.startup_status import MAX_PODS, observe_startup, startup_status


def _read(pod: str, startup: object, address: str = "http://10.0.0.1:8080") -> PodRead:
    return PodRead(pod=pod, address=address, at=0.0, report={"ready": True, "startup": startup}, error="")


def test_phases_and_the_cache_result_reach_status_and_fit_the_schema() -> None:
    targets = [PodTarget("m-b", "http://10.0.0.1:8080"), PodTarget("m-a", "http://10.0.0.2:8080")]
    reads = {
        "m-b": _read("m-b", {"seconds": {"fetch": 0.02, "verify": 0.1, "load": 0.5}, "cache": "hit"}),
        "m-a": _read(
            "m-a",
            {
                "seconds": {"fetch": 4.25, "verify": 0.1},
                "bytes": {"fetch": 2000, "verify": 2000},
                "cache": "miss",
            },
            "http://10.0.0.2:8080",
        ),
    }
    status = startup_status("7c9d", observe_startup(targets, reads))
    assert status == {
        "revision": "7c9d",
        "replicas": [
            {
                "pod": "m-a",
                "seconds": {"fetch": 4.25, "verify": 0.1},
                "bytes": {"fetch": 2000, "verify": 2000},
                "cache": "miss",
            },
            {"pod": "m-b", "seconds": {"fetch": 0.02, "verify": 0.1, "load": 0.5}, "cache": "hit"},
        ],
    }
    InferenceModelStatus.model_validate({"startup": status})


def test_hostile_or_stale_reports_are_dropped_not_guessed() -> None:
    targets = [PodTarget("m-a", "http://10.0.0.1:8080"), PodTarget("m-b", "http://10.0.0.9:8080")]
    reads = {
        "m-a": _read(
            "m-a",
            {
                "seconds": {
                    "fetch": "1",
                    "verify": float("nan"),
                    "load": -1,
                    "golden": True,
                    "evil": 3.0,
                    "warmup": 0.5,
                },
                "bytes": {"fetch": 1.5, "verify": -3},
                "cache": "pwned",
            },
        ),
        "m-b": _read(
            "m-b", {"seconds": {"fetch": 1.0}}, "http://10.0.0.8:8080"
        ),  # an old address: not this pod
    }
    (pod,) = observe_startup(targets, reads)
    assert pod.pod == "m-a"
    assert pod.seconds == (("warmup", 0.5),)
    assert pod.bytes == ()
    assert pod.cache is None
    assert startup_status(None, ()) is None


def test_status_lists_a_bounded_number_of_replicas() -> None:
    targets = [PodTarget(f"m-{i:02}", f"http://10.0.1.{i}:8080") for i in range(MAX_PODS + 5)]
    reads = {t.pod: _read(t.pod, {"seconds": {"fetch": 1.0}}, t.address) for t in targets}
    status = startup_status("r", observe_startup(targets, reads))
    assert status is not None
    assert len(status["replicas"]) == MAX_PODS


def test_a_replica_newly_refetched_from_a_corrupted_cache_entry_is_one_warning_event() -> None:
    from infergate_operator.status import events_for

    old = {"conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]}
    new = {
        **old,
        "startup": {"replicas": [{"pod": "m-a", "cache": "hit"}, {"pod": "m-b", "cache": "refetched"}]},
    }
    (event,) = events_for(old, new)
    assert (event.event_type, event.reason) == ("Warning", "NodeCacheEntryRefetched")
    assert "m-b" in event.message
    assert events_for(new, new) == []  # told once
