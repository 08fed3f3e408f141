"""schemathesis over /openapi.json of a real server: >= 200 examples per operation, no 5xx, no response
that breaks the document (status, content type, schema)."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from .conftest import ServerProcess, example_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzz_server(tiny_example: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("fuzz")
    # a big queue: the fuzzer is not testing overload, and 429 is documented anyway
    srv = ServerProcess(
        example_config(tiny_example, tmp, {"runtime": {"maxQueueDepth": 1024}}), tmp / "server.log"
    )
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.terminate()


def _fuzz(op: Any, label: str, counts: dict[str, int], mode: GenerationMode) -> None:
    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(op.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        counts[label] += 1
        case.call_and_validate(excluded_checks=[positive_data_acceptance])

    run()


def test_api_conforms_to_its_openapi_document(fuzz_server: ServerProcess) -> None:
    # Driven by hand: schemathesis' pytest plugin does not work with this pytest (Function._nodeid).
    schema = schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")
    counts: dict[str, int] = {}
    for result in schema.get_all_operations():
        op = result.ok()
        label = op.label
        counts[label] = 0

        _fuzz(op, label, counts, GenerationMode.POSITIVE)
        if "{" in label:  # schema-breaking names and bodies too: each must be refused with a 4xx
            _fuzz(op, label, counts, GenerationMode.NEGATIVE)
    print(counts)
    assert len(counts) == 12
    # operations with inputs get >= 200 examples; those without any (GET /healthz) have one distinct example
    with_inputs = {k: v for k, v in counts.items() if "{" in k}
    assert all(v >= 200 for v in with_inputs.values()), counts
    log = fuzz_server.log()
    assert " ERROR " not in log
    assert " 500 " not in log
    assert " 400 input 'x': " in log  # generated bodies did reach the tensor checks
