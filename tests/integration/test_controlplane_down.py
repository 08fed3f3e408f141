"""tools/controlplane/down stops the processes started beside a cluster even when one waits for another to
go first or ignores SIGTERM, as KEDA's HTTP scaler does (it stops only once the KEDA operator's stream to
it has closed). Real processes and the real script; no cluster is needed for this part of `down`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.controlplane import CONTROLPLANE
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration

# Exits on SIGTERM only once the process in argv[1]'s pid file is gone (a graceful stop waiting for a client).
WAITS_FOR_CLIENT = """
import os, signal, sys, time
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
client = int(open(sys.argv[1]).read())
while True:
    if stopping:
        try:
            os.kill(client, 0)
        except ProcessLookupError:
            sys.exit(0)
    time.sleep(0.05)
"""
IGNORES_SIGTERM = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(3600)\n"
PLAIN = "import time\ntime.sleep(3600)\n"


def test_down_stops_processes_beside_the_cluster_that_wait_for_each_other_or_ignore_sigterm(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    cluster_dir = state / "clusters" / "igdown"
    cluster_dir.mkdir(parents=True)
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, code: str, *args: str) -> int:
        process = subprocess.Popen([sys.executable, "-c", code, *args], start_new_session=True)
        started.append(process)
        # Reaped as soon as it exits, so that `down` (kill -0) and the server see it gone, not a zombie.
        threading.Thread(target=process.wait, daemon=True).start()
        (cluster_dir / f"{name}.pid").write_text(f"{process.pid}\n")
        return process.pid

    try:
        # Named so that the glob in `down` meets the waiting one before the one it waits for.
        start("keda-operator", PLAIN)
        start("keda-http-scaler", WAITS_FOR_CLIENT, str(cluster_dir / "keda-operator.pid"))
        start("stubborn", IGNORES_SIGTERM)
        time.sleep(0.5)  # the handlers are installed
        env = {**os.environ, "INFERGATE_STATE_DIR": str(state), "INFERGATE_CLUSTER": "igdown"}
        began = time.monotonic()
        subprocess.run([str(CONTROLPLANE / "down")], env=env, check=True, timeout=90, capture_output=True)
        took = time.monotonic() - began
        wait_for(lambda: all(p.returncode is not None for p in started), 5, "all three gone")
        # The scaler stopped by SIGTERM once the operator was gone, not by the SIGKILL for the stubborn one.
        assert started[1].returncode == 0
        assert took < 40, took
        assert not cluster_dir.exists()
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
