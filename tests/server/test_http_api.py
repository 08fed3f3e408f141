"""A real `infergate-server serve` process on the tiny example, over real HTTP."""

import asyncio
import socket

import httpx
import numpy as np
import onnxruntime as ort
import orjson
import pytest
import tritonclient.http as triton
import yaml

from .conftest import REPO, ServerProcess

X = [[1.0, 2.0, 3.0, 4.0]]


def _infer_body(data: list[list[float]]) -> dict[str, object]:
    return {"inputs": [{"name": "x", "shape": [len(data), 4], "datatype": "FP32", "data": data}]}


def test_health_and_readiness(tiny_server: ServerProcess) -> None:
    assert httpx.get(tiny_server.url + "/healthz").json() == {"live": True}
    assert httpx.get(tiny_server.url + "/v2/health/live").status_code == 200
    r = httpx.get(tiny_server.url + "/readyz")
    assert r.status_code == 200
    assert r.json()["phase"] == "Ready"
    assert r.json()["golden"]["result"] == "Passed"
    assert httpx.get(tiny_server.url + "/v2/models/tiny/ready").status_code == 200
    assert httpx.get(tiny_server.url + "/v2/models/other/ready").status_code == 404


def test_infer_matches_in_process_onnxruntime(tiny_server: ServerProcess, tiny_example) -> None:  # type: ignore[no-untyped-def]
    r = httpx.post(tiny_server.url + "/v2/models/tiny/infer", json=_infer_body(X))
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    sess = ort.InferenceSession(str(tiny_example / "model" / "model.onnx"))
    want = sess.run(["y"], {"x": np.array(X, np.float32)})[0]
    assert out["name"] == "y"
    assert out["shape"] == [1, 3]
    assert out["datatype"] == "FP32"
    np.testing.assert_allclose(np.array(out["data"]).reshape(1, 3), want, rtol=1e-6)


def test_golden_endpoint_reports_each_case(tiny_server: ServerProcess) -> None:
    doc = httpx.get(tiny_server.url + "/v2/models/tiny/golden").json()
    assert doc["result"] == "Passed"
    assert doc["passed"] == 2
    assert doc["failed"] == 0
    assert {c["name"] for c in doc["cases"]} == {"two-rows", "negative"}
    assert all(c["maxAbsError"] is not None and c["maxRelError"] is not None for c in doc["cases"])


def test_golden_endpoint_tells_what_the_server_verified(tiny_server: ServerProcess) -> None:
    """The operator reports ArtifactVerified from these facts: the digest this server checked at load."""
    pinned = yaml.safe_load((REPO / "examples/models/tiny-onnx/server.yaml").read_text())["model"]["sha256"]
    artifact = httpx.get(tiny_server.url + "/v2/models/tiny/golden").json()["artifact"]
    assert artifact == {
        "sha256": pinned,
        "sha256Verified": True,
        "verifiedBy": "server",
        "signatureConfigured": False,
    }


def test_official_triton_client_health_metadata_infer(tiny_server: ServerProcess) -> None:
    client = triton.InferenceServerClient(url=tiny_server.url.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("tiny")
        meta = client.get_model_metadata("tiny")
        assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
        assert meta["parameters"]["device"] == "CPUExecutionProvider"
        x = np.array([[1, 2, 3, 4], [0.5, -1, 2, 0]], dtype=np.float32)
        for binary in (True, False):
            inp = triton.InferInput("x", [2, 4], "FP32")
            inp.set_data_from_numpy(x, binary_data=binary)
            out = triton.InferRequestedOutput("y", binary_data=binary)
            res = client.infer("tiny", [inp], outputs=[out])
            y = res.as_numpy("y")
            assert y is not None
            assert y.shape == (2, 3)
            np.testing.assert_allclose(y[0], [2.7875, 3.2375, 4.4875], rtol=1e-5)
        res = client.infer("tiny", [inp])  # no outputs named: all outputs, binary
        assert res.as_numpy("y") is not None
    finally:
        client.close()


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (b'{"inputs": [', {}, 400, "not valid JSON"),
        (
            b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "BYTES", "data": ["\xff"]}]}',
            {},
            400,
            "not valid JSON",
        ),
        (
            b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 4]}]}',
            {},
            400,
            "input 'x': datatype 'INT64', the model expects FP32",
        ),
        (
            b'{"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}]}',
            {},
            400,
            "input 'x': shape [1, 5], the model expects [-1, 4]",
        ),
        (
            b'{"inputs": [{"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}',
            {},
            400,
            "input 'z': the model has no such input",
        ),
        (
            b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}',
            {"content-type": "text/plain"},
            415,
            "Content-Type 'text/plain'",
        ),
        (
            b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}',
            {"content-encoding": "gzip"},
            415,
            "Content-Encoding 'gzip'",
        ),
    ],
)
def test_bad_requests_get_4xx_with_a_clear_message(
    tiny_server: ServerProcess, body: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    h = {"content-type": "application/json", **headers}
    r = httpx.post(tiny_server.url + "/v2/models/tiny/infer", content=body, headers=h)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_body_over_the_limit_is_413_before_reading(tiny_server: ServerProcess) -> None:
    big = b"x" * (16 * 1024 * 1024 + 1)
    r = httpx.post(
        tiny_server.url + "/v2/models/tiny/infer", content=big, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert "maxBodyBytes" in r.json()["error"]


def test_unknown_model_is_404(tiny_server: ServerProcess) -> None:
    r = httpx.post(tiny_server.url + "/v2/models/nope/infer", json=_infer_body(X))
    assert r.status_code == 404
    assert "nope" in r.json()["error"]


def test_metrics_use_the_design_names(tiny_server: ServerProcess) -> None:
    httpx.post(tiny_server.url + "/v2/models/tiny/infer", json=_infer_body(X))
    text = httpx.get(tiny_server.url + "/metrics").text
    for name in (
        'inference_requests_total{model="tiny",status="200"}',
        'inference_requests_total{model="tiny",status="400"}',
        'inference_latency_seconds_bucket{le="0.0005",model="tiny"}',
        'inference_queue_depth{model="tiny"}',
        'inference_batch_size_bucket{le="1.0",model="tiny"}',
        'golden_checks_total{model="tiny",result="Passed"}',
        "process_resident_memory_bytes",
        'inference_gpus_allocated{model="tiny"} 0.0',
    ):
        assert name in text, name
    busy = next(
        line for line in text.splitlines() if line.startswith('inference_busy_seconds_total{model="tiny"}')
    )
    assert float(busy.split()[-1]) > 0


def test_batched_results_equal_unbatched_in_order(tiny_server: ServerProcess) -> None:
    rng = np.random.default_rng(7)
    rows = [rng.normal(size=(1 + i % 3, 4)).astype(np.float32).round(3).tolist() for i in range(40)]
    one_by_one = [
        httpx.post(tiny_server.url + "/v2/models/tiny/infer", json=_infer_body(r)).json()["outputs"][0][
            "data"
        ]
        for r in rows
    ]
    before = _batches_over_one(tiny_server)

    async def concurrent() -> list[list[float]]:
        async with httpx.AsyncClient(base_url=tiny_server.url) as c:
            rs = await asyncio.gather(*(c.post("/v2/models/tiny/infer", json=_infer_body(r)) for r in rows))
        assert all(r.status_code == 200 for r in rs)
        return [r.json()["outputs"][0]["data"] for r in rs]

    together = asyncio.run(concurrent())
    for a, b in zip(one_by_one, together, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert _batches_over_one(tiny_server) > before, "concurrent requests never shared a batch"


def _batches_over_one(srv: ServerProcess) -> float:
    text = httpx.get(srv.url + "/metrics").text
    total = le1 = 0.0
    for line in text.splitlines():
        if line.startswith('inference_batch_size_count{model="tiny"}'):
            total = float(line.split()[-1])
        if line.startswith('inference_batch_size_bucket{le="1.0",model="tiny"}'):
            le1 = float(line.split()[-1])
    return total - le1


def test_infer_routes_take_post_only_and_check_the_version(tiny_server: ServerProcess) -> None:
    url = tiny_server.url + "/v2/models/tiny"
    assert httpx.post(url + "/versions/1/infer", json=_infer_body(X)).status_code == 200
    r = httpx.post(url + "/versions/9/infer", json=_infer_body(X))
    assert r.status_code == 404
    assert "version '9'" in r.json()["error"]
    assert httpx.get(url + "/infer").status_code == 405
    assert httpx.post(url + "/infer/more", json=_infer_body(X)).status_code == 404


def test_a_client_gone_mid_body_gets_no_answer_and_leaves_no_error(tiny_server: ServerProcess) -> None:
    body = orjson.dumps(_infer_body(X))
    head = (
        f"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", tiny_server.port)) as s:
            s.sendall(head + body[:10])
    r = httpx.post(tiny_server.url + "/v2/models/tiny/infer", json=_infer_body(X))
    assert r.status_code == 200, r.text
    text = httpx.get(tiny_server.url + "/metrics").text
    assert 'status="500"' not in text
    assert "Traceback" not in tiny_server.log()


def test_golden_report_closes_its_connection(tiny_server: ServerProcess) -> None:
    """A canary's golden gate reads through a Service whose selector moves to the new revision: a reused
    connection would stay with the old revision's pod (kube-proxy balances connections), so every golden
    answer closes its connection. (Seen on the real node: the gate kept reading the stable pod and passed.)"""
    port = int(tiny_server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET /v2/models/tiny/golden HTTP/1.1\r\nhost: x\r\n\r\n")
        received = b""
        while chunk := conn.recv(65536):  # ends only when the server closes the connection
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"connection: close" in head.lower()
    assert orjson.loads(body)["result"] == "Passed"
    # Other routes keep their connections.
    with httpx.Client(base_url=tiny_server.url) as client:
        assert "close" not in client.get("/v2/health/live").headers.get("connection", "")
