"""Packaging fixtures: the control plane's helm/kubectl, and one private control plane per session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.integration.controlplane import ControlPlane, start
from tests.packaging.render import Tools, tools


@pytest.fixture(scope="session")
def bins() -> Tools:
    return tools()


@pytest.fixture(scope="session")
def plane() -> Iterator[ControlPlane]:
    """A private cluster (INFERGATE_PACKAGING_CLUSTER reuses a running one and leaves it up)."""
    reuse = os.environ.get("INFERGATE_PACKAGING_CLUSTER")
    cp = start(reuse or f"infergate-pkg-{os.getpid()}")
    try:
        yield cp
    finally:
        if not reuse:
            cp.down()
