"""Shadow traffic (issue 18) between real servers: a stable copies sampled answered requests to a candidate
and compares outputs with the golden comparator. A candidate that passed its golden set but answers live
traffic differently is caught; an identical one is not; the live answers never change."""

from __future__ import annotations

import contextlib
import http.server
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from infergate_server.metrics import Metrics
from infergate_server.shadow import Sampler

from .conftest import TINY_STARTUP_CALLS, ServerProcess, free_port

WRONG = {"runtime": {"args": {"debugPerturbBy": 0.5, "debugPerturbAfterCalls": TINY_STARTUP_CALLS}}}


def _shadowed(start_server: Any, example: Path, target: str, **shadow: Any) -> ServerProcess:
    config = {"targetUrl": target, "samplePercent": 100, "maxRequestsPerSecond": 1000, **shadow}
    srv: ServerProcess = start_server(example, {"shadow": config})
    srv.wait_ready()
    return srv


def _send(url: str, n: int) -> list[list[float]]:
    rng = np.random.default_rng(3)
    answers = []
    with httpx.Client(timeout=5) as client:
        for _ in range(n):
            x = [round(float(v), 4) for v in rng.normal(0, 1, 8)]
            body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": x}]}
            response = client.post(url + "/v2/models/tiny/infer", json=body)
            assert response.status_code == 200
            answers.append(response.json()["outputs"][0]["data"])
    return answers


def _counts(url: str, until: int, key: str = "matched") -> dict[str, Any]:
    deadline = time.monotonic() + 15
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = httpx.get(url + "/v2/models/tiny/golden", timeout=5).json()["shadow"]
        done = doc["matched"] + doc["diverged"] + doc["errored"] + doc["dropped_rate"] + doc["dropped_queue"]
        if done >= until:
            return doc
        time.sleep(0.05)
    raise AssertionError(f"shadow never accounted for {until} requests: {doc}")


def test_an_identical_candidate_matches(start_server: Any, tiny_example: Path) -> None:
    candidate = start_server(tiny_example)
    candidate.wait_ready()
    stable = _shadowed(start_server, tiny_example, candidate.url)
    _send(stable.url, 40)
    doc = _counts(stable.url, 40)
    assert (doc["matched"], doc["diverged"], doc["errored"]) == (40, 0, 0), doc
    metrics = httpx.get(stable.url + "/metrics", timeout=5).text
    assert re.search(
        r'^inference_shadow_requests_total\{model="tiny",result="matched"\} 40\.0$', metrics, re.M
    )


def test_a_candidate_wrong_on_live_traffic_but_golden_clean_diverges(
    start_server: Any, tiny_example: Path
) -> None:
    candidate = start_server(tiny_example, WRONG)
    candidate.wait_ready()  # its golden cases ran before the perturbation starts: it is Ready
    stable = _shadowed(start_server, tiny_example, candidate.url)
    live = _send(stable.url, 20)
    doc = _counts(stable.url, 20)
    assert (doc["matched"], doc["diverged"]) == (0, 20), doc
    assert "y: 6 of 6 values out of tolerance (max abs 0.5" in doc["lastProblem"]
    metrics = httpx.get(stable.url + "/metrics", timeout=5).text
    assert 'inference_shadow_abs_error_bucket{le="1.0",model="tiny",output="y"} 20.0' in metrics
    assert 'inference_shadow_abs_error_bucket{le="0.1",model="tiny",output="y"} 0.0' in metrics
    assert live == _send(stable.url, 20), "the live answers are the stable's own"


def test_copies_over_the_cap_or_to_a_dead_candidate_are_counted_not_waited_for(
    start_server: Any, tiny_example: Path
) -> None:
    stable = _shadowed(
        start_server,
        tiny_example,
        f"http://127.0.0.1:{free_port()}",
        maxRequestsPerSecond=5,
        timeoutSeconds=1,
    )
    _send(stable.url, 60)
    doc = _counts(stable.url, 60)
    assert doc["dropped_rate"] >= 40, doc
    assert doc["errored"] == 60 - doc["dropped_rate"] - doc["dropped_queue"], doc
    assert "connect" in doc["lastProblem"].lower(), doc["lastProblem"]


@pytest.mark.parametrize(("percent", "expected"), [(10, 10), (25, 25), (100, 100), (3.3, 3)])
def test_sampling_is_exact_over_time(percent: float, expected: int) -> None:
    sampler = Sampler(percent, rate=1e9)
    assert sum(sampler.sampled() for _ in range(100)) == expected


def test_the_token_bucket_caps_copies_per_second() -> None:
    now = [0.0]
    sampler = Sampler(100, rate=10, clock=lambda: now[0])
    assert sum(sampler.admit() for _ in range(50)) == 10  # the burst
    now[0] = 0.5
    assert sum(sampler.admit() for _ in range(50)) == 5
    assert Metrics()  # registry builds with the shadow metrics


def test_answers_decode_from_binary_and_json_alike() -> None:
    from infergate_server.protocol import InferRequest, encode_response
    from infergate_server.shadow import ShadowAnswerError, outputs_of

    texts = np.empty(2, dtype=object)
    texts[:] = [b"a", b"bcd"]
    outputs = {"y": np.arange(6, dtype=np.float32).reshape(2, 3), "t": texts}
    for binary in (True, False):
        body, header = encode_response("m", "1", InferRequest({}, None, binary_default=binary), outputs)
        got = outputs_of(body, header)
        assert got["y"].tolist() == outputs["y"].tolist()
        assert got["t"].tolist() == [b"a", b"bcd"]
    body, header = encode_response("m", "1", InferRequest({}, None, binary_default=True), outputs)
    with pytest.raises(ShadowAnswerError, match="past the body"):
        outputs_of(body[:-2], header)


class _HugeAnswer(http.server.BaseHTTPRequestHandler):
    """A candidate that answers every copy with a body claimed (and, chunked, sent) beyond any bound."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.path.startswith("/v2/models/chunked/"):
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"0" * (1 << 20)
            with contextlib.suppress(OSError):
                for _ in range(80):  # 80 MiB, over the 64 MiB bound
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(10**12))
            self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.mark.parametrize("target_model", ["claimed", "chunked"])
def test_a_candidate_answer_over_the_bound_is_an_error_not_memory(
    start_server: Any, tiny_example: Path, target_model: str
) -> None:
    candidate = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HugeAnswer)
    threading.Thread(target=candidate.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{candidate.server_address[1]}"
        stable = _shadowed(start_server, tiny_example, url, model=target_model, timeoutSeconds=20)
        _send(stable.url, 2)
        doc = _counts(stable.url, 2)
        assert doc["errored"] == 2, doc
        assert "over" in doc["lastProblem"], doc["lastProblem"]
    finally:
        candidate.shutdown()
