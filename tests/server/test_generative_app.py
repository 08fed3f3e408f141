"""The app with a GenerativeBackend (the protocol vLLM and transformers implement): golden prompts gate
readiness through `complete`; the OIP infer route declines (their data path is the OpenAI server).
A scripted backend stands in for the LLM here; the real ones have their own tests."""

import asyncio
import time
from pathlib import Path
from typing import Any

from infergate_server.app import InferGateApp
from infergate_server.backends.base import (
    BackendError,
    BackendInfo,
    Completion,
    GenerativeBackend,
    Liveness,
    Supervised,
)
from infergate_server.config import ServerConfig
from infergate_server.metrics import Metrics
from infergate_server.model import ServedModel
from starlette.testclient import TestClient


class ScriptedLLM:
    def __init__(self, text: str, ids: tuple[int, ...]) -> None:
        self.calls: list[tuple[str, int, int]] = []
        self._completion = Completion(text, ids)

    @property
    def info(self) -> BackendInfo:
        return BackendInfo(runtime="scripted", device="cpu")

    async def load(self) -> None:
        pass

    async def complete(self, prompt: str, max_tokens: int, seed: int) -> Completion:
        self.calls.append((prompt, max_tokens, seed))
        return self._completion

    async def unload(self) -> None:
        pass


def _app(tmp_path: Path, backend: ScriptedLLM, period_s: float = 0) -> InferGateApp:
    weights = tmp_path / "model"
    weights.mkdir()
    (weights / "config.json").write_text("{}")
    cfg = ServerConfig.from_dict(
        {
            "model": {"name": "smol", "path": str(weights), "format": "hf-causal-lm"},
            "runtime": {"backend": "vllm"},
            "golden": {
                "cases": [
                    {
                        "name": "capital",
                        "prompt": "The capital of France is",
                        "maxTokens": 4,
                        "expectedText": " Paris",
                        "expectedTokenIds": [3681],
                    }
                ],
                "periodSeconds": period_s,
            },
        }
    )
    assert isinstance(backend, GenerativeBackend)
    metrics = Metrics()
    return InferGateApp(cfg, ServedModel(cfg, metrics, backend=backend), metrics)


def _settle(client: TestClient) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        doc = client.get("/readyz").json()
        if doc["phase"] in ("Ready", "NotReady", "Failed"):
            return doc
        time.sleep(0.01)
    raise AssertionError("never settled")


def test_golden_prompt_passing_makes_it_ready(tmp_path: Path) -> None:
    llm = ScriptedLLM(" Paris. It is", (3681, 30, 657))
    app = _app(tmp_path, llm)
    with TestClient(app.asgi) as client:
        assert _settle(client)["ready"] is True
        assert llm.calls == [("The capital of France is", 4, 0)]
        golden = client.get("/v2/models/smol/golden").json()
        assert golden["result"] == "Passed"
        r = client.post(
            "/v2/models/smol/infer",
            json={"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]},
        )
        assert r.status_code == 400
        assert "OpenAI-compatible" in r.json()["error"]


def test_wrong_completion_never_turns_ready(tmp_path: Path) -> None:
    app = _app(tmp_path, ScriptedLLM(" Lyon", (999,)))
    with TestClient(app.asgi) as client:
        doc = _settle(client)
        assert doc["phase"] == "NotReady"
        assert "capital: Failed" in str(doc["reason"])
        assert client.get("/v2/health/ready").status_code == 503


def test_stale_golden_result_is_not_ready_and_readyz_refreshes_it(tmp_path: Path) -> None:
    llm = ScriptedLLM(" Paris", (3681,))
    app = _app(tmp_path, llm, period_s=3600)
    with TestClient(app.asgi) as client:
        assert _settle(client)["ready"] is True
        app.model._checked_at -= 20_000  # as if the periodic check had stopped answering hours ago
        r = client.get("/readyz")
        assert r.status_code == 503
        assert "golden result is" in r.json()["reason"]
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200:  # the probe started a fresh run in the background
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert len(llm.calls) == 2


class SupervisedLLM(ScriptedLLM):
    """A scripted LLM whose process can 'die' and come back as a new generation, as vLLM's child does
    under the supervisor (the real one is killed by pid in test_vllm_serve)."""

    def __init__(self, text: str, ids: tuple[int, ...]) -> None:
        super().__init__(text, ids)
        self.alive = True
        self.generation = 1
        self._changed = asyncio.Event()

    def liveness(self) -> Liveness:
        return Liveness(
            self.alive, self.generation, f"child {self.generation} {'up' if self.alive else 'down'}"
        )

    def change_event(self) -> asyncio.Event:
        return self._changed

    def change(self, *, alive: bool, new_process: bool = False) -> None:
        self.alive = alive
        self.generation += int(new_process)
        self._changed.set()
        self._changed = asyncio.Event()

    async def complete(self, prompt: str, max_tokens: int, seed: int) -> Completion:
        if not self.alive:
            raise BackendError("child is down")
        return await super().complete(prompt, max_tokens, seed)


def _wait_for(client: TestClient, status: int) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = client.get("/readyz")
        if r.status_code == status:
            doc: dict[str, Any] = r.json()
            return doc
        time.sleep(0.005)
    raise AssertionError(f"/readyz never answered {status}: {r.json()}")


def test_a_dead_supervised_backend_is_not_ready_until_golden_passes_on_its_replacement(
    tmp_path: Path,
) -> None:
    llm = SupervisedLLM(" Paris. It is", (3681, 30, 657))
    assert isinstance(llm, Supervised)
    app = _app(tmp_path, llm)
    with TestClient(app.asgi) as client:
        assert _settle(client)["ready"] is True
        calls = len(llm.calls)
        client.portal.call(lambda: llm.change(alive=False))  # type: ignore[union-attr]
        r = client.get("/readyz")
        assert r.status_code == 503  # at once: no golden run in between
        assert "backend not live: child 1 down" in r.json()["reason"]
        assert r.json()["backend"] == {"live": False, "generation": 1, "reason": "child 1 down"}
        assert client.get("/v2/models/smol/ready").status_code == 503
        assert client.get("/healthz").status_code == 200
        assert len(llm.calls) == calls
        client.portal.call(lambda: llm.change(alive=True, new_process=True))  # type: ignore[union-attr]
        doc = _wait_for(client, 200)  # the watcher ran golden on the new child
        assert len(llm.calls) == calls + 1
        assert doc["backend"]["generation"] == 2
        # A replacement whose golden prompt fails stays not ready.
        llm._completion = Completion(" Lyon", (5, 6))
        client.portal.call(lambda: llm.change(alive=False))  # type: ignore[union-attr]
        _wait_for(client, 503)
        client.portal.call(lambda: llm.change(alive=True, new_process=True))  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        while len(llm.calls) < calls + 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["reason"].startswith("golden Failed"), r.json()
