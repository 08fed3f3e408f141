"""A real OCI registry for tests and benchmarks: CNCF distribution's `registry`, built from the Go module
proxy by tools/registry/build (pinned in tools/controlplane/versions.env, cached under ~/.cache/infergate),
started on 127.0.0.1 with its storage under a temporary folder; optionally behind htpasswd (Basic) auth."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tools" / "registry" / "build"


def registry_binary() -> Path:
    """The built registry (building it once, ~2 min cold on 2 cores)."""
    out = subprocess.run([str(BUILD)], check=True, capture_output=True, text=True, timeout=1800)
    return Path(out.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    host: str  # 127.0.0.1:<port>
    process: subprocess.Popen[bytes]
    log: Path
    user: str | None = None
    password: str | None = None

    def auth_file(self, folder: Path, user: str | None = None, password: str | None = None) -> Path:
        """A Docker config (a dockerconfigjson Secret's content) with these credentials for this registry."""
        user, password = user or self.user, password or self.password
        assert user is not None
        assert password is not None
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        path = folder / f"dockerconfig-{user}.json"
        path.write_text(json.dumps({"auths": {self.host: {"auth": auth}}}))
        return path

    def blob_gets(self, digest: str) -> int:
        """How many times the blob was served (needs access_log)."""
        return sum(
            1
            for line in self.log.read_text(errors="replace").splitlines()
            if f"/blobs/{digest} " in line and '"GET ' in line and '" 200 ' in line
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_registry(
    workdir: Path, user: str | None = None, password: str | None = None, access_log: bool = False
) -> Registry:
    """Started and answering /v2/; with `access_log` every request is a line in `Registry.log`."""
    binary = registry_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    auth = ""
    if user is not None and password is not None:
        import bcrypt

        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        (workdir / "htpasswd").write_text(f"{user}:{hashed}\n")
        auth = f"auth:\n  htpasswd:\n    realm: infergate-test\n    path: {workdir / 'htpasswd'}\n"
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        f"log:\n  level: warn\n  accesslog:\n    disabled: {'false' if access_log else 'true'}\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'storage'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  debug:\n    addr: ''\n" + auth
    )
    log = workdir / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(binary), "serve", str(config)], stdout=out, stderr=subprocess.STDOUT)
    host = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://{host}/v2/", timeout=2)
            break
        except urllib.error.HTTPError:  # 401 with auth on: it is up
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"registry did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.1)
    return Registry(host, proc, log, user, password)
