"""A pod handed the previous revision's config (the kubelet's cached ConfigMap) waits for its own.

The ConfigMap volume is laid out the way the kubelet writes it: `server.yaml -> ..data/server.yaml`, and
`..data` a symlink swapped atomically to a new timestamped folder on each update.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from infergate_server.config import ConfigError
from infergate_server.config_sync import DIGESTS_ENV, TIMEOUT_ENV, parse_digests


def config_text(src: Path, dest: str, sha: str) -> str:
    return f"model: {{name: tiny, path: {dest}, uri: 'file://{src}', sha256: {sha}}}\n"


def kubelet_volume(root: Path, text: str) -> Path:
    (root / "..v1").mkdir(parents=True)
    (root / "..v1" / "server.yaml").write_text(text)
    (root / "..data").symlink_to("..v1")
    (root / "server.yaml").symlink_to("..data/server.yaml")
    return root / "server.yaml"


def kubelet_update(root: Path, text: str) -> None:
    (root / "..v2").mkdir()
    (root / "..v2" / "server.yaml").write_text(text)
    (root / "..data_tmp").symlink_to("..v2")
    os.replace(root / "..data_tmp", root / "..data")


def fetch(config: Path, digests: str, timeout_s: float) -> subprocess.Popen[str]:
    env = {**os.environ, DIGESTS_ENV: digests, TIMEOUT_ENV: str(timeout_s)}
    cmd = [sys.executable, "-m", "infergate_server.cli", "fetch", "--config", str(config)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def artifact(tiny_example: Path) -> tuple[Path, str]:
    model = tiny_example / "model" / "model.onnx"
    return model, hashlib.sha256(model.read_bytes()).hexdigest()


def test_fetch_waits_for_its_revisions_config_and_never_uses_the_previous_one(
    artifact: tuple[Path, str], tmp_path: Path
) -> None:
    src, sha = artifact
    previous = config_text(src, str(tmp_path / "previous" / "model.onnx"), sha)
    current = config_text(src, str(tmp_path / "current" / "model.onnx"), sha)
    volume = tmp_path / "config"
    config = kubelet_volume(volume, previous)
    digests = f"server.yaml={hashlib.sha256(current.encode()).hexdigest()}"

    proc = fetch(config, digests, timeout_s=60)
    updater = threading.Timer(1.5, kubelet_update, (volume, current))
    updater.start()
    out, err = proc.communicate(timeout=60)
    updater.join()

    assert proc.returncode == 0, err
    assert out.strip() == sha
    assert "not this revision's yet (server.yaml)" in err
    assert (tmp_path / "current" / "model.onnx").exists()
    assert not (tmp_path / "previous").exists()


def test_a_config_that_never_catches_up_fails_naming_the_key(
    artifact: tuple[Path, str], tmp_path: Path
) -> None:
    src, sha = artifact
    previous = config_text(src, str(tmp_path / "previous" / "model.onnx"), sha)
    config = kubelet_volume(tmp_path / "config", previous)
    digests = f"server.yaml={'0' * 64}"

    started = time.monotonic()
    proc = fetch(config, digests, timeout_s=2)
    _, err = proc.communicate(timeout=60)

    assert proc.returncode == 2, err
    assert "server.yaml never matched this revision's config in 2s" in err
    assert time.monotonic() - started >= 2
    assert not (tmp_path / "previous").exists()


def test_a_matching_config_is_used_at_once(artifact: tuple[Path, str], tmp_path: Path) -> None:
    src, sha = artifact
    current = config_text(src, str(tmp_path / "current" / "model.onnx"), sha)
    config = kubelet_volume(tmp_path / "config", current)
    digests = f"server.yaml={hashlib.sha256(current.encode()).hexdigest()}"

    out, err = fetch(config, digests, timeout_s=0).communicate(timeout=60)

    assert out.strip() == sha, err
    assert "not this revision's" not in err


@pytest.mark.parametrize(
    "value",
    ["", "server.yaml", "server.yaml=abc", f"../x={'0' * 64}", f"a/b={'0' * 64}", f"server.yaml={'A' * 64}"],
)
def test_malformed_digests_are_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match=DIGESTS_ENV):
        parse_digests(value)
