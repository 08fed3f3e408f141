"""Fixtures for golden reports as servers send them (GET /v2/models/{m}/golden), and reads of them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from infergate_operator.golden import PodRead, PodTarget, observe_reports
from infergate_operator.observed import Observed

DIGEST = "9f2c" + "ab" * 30
READ_AT = 1_795_000_000.0  # 2026-11-18T...; any fixed wall-clock second


def case(
    name: str, passed: bool = True, abs_error: float = 1e-6, rel_error: float = 1e-6, result: str = ""
) -> dict[str, Any]:
    return {
        "name": name,
        "result": result or ("Passed" if passed else "Failed"),
        "passed": passed,
        "maxAbsError": abs_error,
        "maxRelError": rel_error,
        "message": "" if passed else f"{name}: output out of tolerance",
    }


def report(
    *cases: dict[str, Any],
    phase: str = "",
    reason: str = "",
    digest: str | None = DIGEST,
    verified: bool = True,
    signature: bool = False,
) -> dict[str, Any]:
    """A server's golden report; without cases, one whose golden run has not finished (or never ran)."""
    ok = all(c["passed"] for c in cases)
    doc: dict[str, Any] = {
        "name": "m",
        "ready": bool(cases) and ok,
        "phase": phase or ("Ready" if cases and ok else "NotReady" if cases else "Loading"),
        "reason": reason,
        "artifact": {
            "sha256": digest,
            "sha256Verified": verified and digest is not None,
            "verifiedBy": "server",
            "signatureConfigured": signature,
        },
    }
    if cases:
        doc.update(
            result="Passed" if ok else "Failed",
            passed=sum(c["passed"] for c in cases),
            failed=sum(not c["passed"] for c in cases),
            checkedAt=READ_AT - 5,
            cases=list(cases),
        )
    return doc


def target(pod: str, ready: bool = True, fetched: bool = True, ip: str = "10.0.0.1") -> PodTarget:
    return PodTarget(pod, f"http://{ip}:8080", ready, fetched)


def read(t: PodTarget, body: dict[str, Any] | None = None, error: str = "", at: float = READ_AT) -> PodRead:
    return PodRead(t.pod, t.address, at, body, error if body is None else "")


def served(base: Observed, *reads: tuple[PodTarget, PodRead], revision: str = "abc123") -> Observed:
    """`base` with what these reads say, as reconcile builds it (observe_reports over the targets)."""
    targets = tuple(t for t, _ in reads)
    golden, artifact = observe_reports(targets, {r.pod: r for _, r in reads}, revision)
    return replace(base, golden=golden, artifact=artifact)


def passing(base: Observed, pods: int = 2, revision: str = "abc123") -> Observed:
    """Every pod read, every case passed, the digest verified by each server."""
    pairs = []
    for i in range(pods):
        t = target(f"m-{i}", ip=f"10.0.0.{i + 1}")
        pairs.append((t, read(t, report(case("positive"), case("negative")))))
    return served(base, *pairs, revision=revision)


def failing(base: Observed, revision: str = "abc123") -> Observed:
    """Two pods read: case `negative` out of tolerance on m-1."""
    a, b = target("m-0"), target("m-1", ip="10.0.0.2")
    bad = report(case("positive"), case("negative", passed=False, abs_error=0.5, rel_error=0.25))
    return served(
        base, (a, read(a, report(case("positive"), case("negative")))), (b, read(b, bad)), revision=revision
    )
