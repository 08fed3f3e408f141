"""A rolling update under steady traffic loses no request: the old pod gets a real SIGTERM, leaves the
Service's endpoints, and drains while the new one (golden passed) takes over."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest
from kubernetes import client

from tests.integration.models import Models
from tests.integration.operator_process import OperatorProcess
from tests.integration.waiting import wait_for
from tests.realnode.realnode import pods, real_example, service_url

pytestmark = [pytest.mark.integration, pytest.mark.realnode]


class SteadyTraffic:
    """One request at a time, a new connection each, until stopped; counts outcomes."""

    def __init__(self, url: str, body: dict[str, object]) -> None:
        self.url, self.body = url, body
        self.outcomes: Counter[str] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 300  # bounded, whatever happens to the test
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                response = httpx.post(self.url, json=self.body, timeout=5, headers={"connection": "close"})
                self.outcomes[str(response.status_code)] += 1
                if response.status_code != 200:
                    self.errors.append(f"{response.status_code} {response.text[:200]}")
            except httpx.HTTPError as error:
                self.outcomes["error"] += 1
                self.errors.append(repr(error))
            time.sleep(0.02)

    def __enter__(self) -> SteadyTraffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_rolling_update_under_traffic_loses_no_request(
    real_api: client.ApiClient, real_namespace: str, real_operator: OperatorProcess
) -> None:
    models = Models(real_api, real_namespace)
    body = real_example("tiny-onnx")
    models.create(body)
    models.wait_condition("tiny", "GoldenPassed", "True", timeout_s=180)
    models.wait_available("tiny")
    (old,) = pods(real_api, real_namespace, "tiny")

    case = body["spec"]["golden"]["cases"][0]
    request = {"inputs": [{"name": k, **v} for k, v in case["inputs"].items()]}
    url = f"{service_url(real_api, real_namespace, 'tiny')}/v2/models/tiny/infer"
    with SteadyTraffic(url, request) as traffic:
        wait_for(lambda: traffic.outcomes["200"] >= 20, 30, "traffic to flow")
        models.patch("tiny", {"spec": {"runtime": {"maxQueueDepth": 65}}})

        def replaced() -> bool:
            current = pods(real_api, real_namespace, "tiny")
            return all(p.metadata.name != old.metadata.name for p in current) and any(
                p.status.container_statuses and all(s.ready for s in p.status.container_statuses)
                for p in current
            )

        wait_for(replaced, 180, "the old pod to be replaced by a ready new one")
        served_before = traffic.outcomes["200"]
        wait_for(lambda: traffic.outcomes["200"] >= served_before + 20, 30, "traffic on the new pod")

    assert traffic.outcomes["200"] > 50, traffic.outcomes
    assert set(traffic.outcomes) == {"200"}, (traffic.outcomes, traffic.errors[:5])
