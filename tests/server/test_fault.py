"""debug.perturbOutputsAfterCalls: a replica that starts right goes wrong after N answered requests, and its
next periodic golden check takes it out of readiness (/readyz 503) within one golden period."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from infergate_server.config import ConfigError, ServerConfig
from infergate_server.fault import OutputFault, perturb

from .conftest import ServerProcess

X = {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
PERIOD_S = 1.0


def _y(srv: ServerProcess) -> list[float]:
    response = httpx.post(srv.url + "/v2/models/tiny/infer", json={"inputs": [X]}, timeout=5)
    assert response.status_code == 200, response.text
    data: list[float] = response.json()["outputs"][0]["data"]
    return data


def _not_ready_within(srv: ServerProcess, seconds: float) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        response = httpx.get(srv.url + "/readyz", timeout=2)
        if response.status_code == 503:
            return time.monotonic() - started, response.json()
        time.sleep(0.05)
    raise AssertionError(f"still ready {seconds} s after going wrong:\n{srv.log()}")


def test_replica_goes_wrong_after_n_calls_and_leaves_readiness_within_a_golden_period(
    start_server: Any, tiny_example: Path
) -> None:
    srv = start_server(
        tiny_example, {"golden": {"periodSeconds": PERIOD_S}, "debug": {"perturbOutputsAfterCalls": 3}}
    )
    srv.wait_ready()
    right = [_y(srv) for _ in range(3)]
    assert right[0] == right[1] == right[2]
    wrong = _y(srv)  # the fourth: perturbed
    assert np.allclose(np.array(wrong) - np.array(right[0]), 1.0), (right[0], wrong)
    took, doc = _not_ready_within(srv, PERIOD_S + 1.0)
    assert doc["phase"] == "NotReady"
    assert "Failed" in doc["reason"]
    golden = httpx.get(srv.url + "/v2/models/tiny/golden").json()
    assert golden["result"] == "Failed"
    assert not golden["ready"]
    assert "debug.perturbOutputsAfterCalls=3" in srv.log()
    # Not ready: the Service stops routing to it; infer answers 503.
    assert httpx.post(srv.url + "/v2/models/tiny/infer", json={"inputs": [X]}).status_code == 503
    assert took <= PERIOD_S + 1.0


def test_without_the_switch_outputs_and_readiness_hold(start_server: Any, tiny_example: Path) -> None:
    srv = start_server(tiny_example, {"golden": {"periodSeconds": PERIOD_S}})
    srv.wait_ready()
    first = _y(srv)
    for _ in range(10):
        assert _y(srv) == first
    time.sleep(2.5 * PERIOD_S)  # two periodic golden runs
    assert httpx.get(srv.url + "/readyz").status_code == 200
    assert "perturbOutputsAfterCalls" not in srv.log()


def test_the_switch_is_config_only() -> None:
    base: dict[str, Any] = {"model": {"name": "m", "path": "/m.onnx"}}
    assert ServerConfig.from_dict(base).debug is None
    with pytest.raises(ConfigError, match=r"debug\.perturbOutputsAfterCalls"):
        ServerConfig.from_dict({**base, "debug": {"perturbOutputsAfterCalls": -1}})
    with pytest.raises(ConfigError, match=r"debug\.perturbOutputs"):
        ServerConfig.from_dict({**base, "debug": {"perturbOutputs": True}})


def test_perturb_changes_every_dtype() -> None:
    outputs = {
        "f": np.array([[0.5, 1.0]], dtype=np.float32),
        "i": np.array([1, 2], dtype=np.int64),
        "b": np.array([True, False]),
        "s": np.array([b"a", b"b"], dtype=object),
    }
    wrong = perturb(outputs)
    assert wrong["f"].tolist() == [[1.5, 2.0]]
    assert wrong["f"].dtype == np.float32
    assert wrong["i"].tolist() == [2, 3]
    assert wrong["b"].tolist() == [False, True]
    assert wrong["s"].tolist() == [b"a~", b"b~"]


def test_fault_counts_answers_not_golden_runs() -> None:
    fault = OutputFault("m", 2)
    y = {"y": np.zeros(2, dtype=np.float32)}
    assert fault.apply(y) is y
    fault.answered()
    assert fault.apply(y) is y
    fault.answered()
    assert fault.apply(y)["y"].tolist() == [1.0, 1.0]
