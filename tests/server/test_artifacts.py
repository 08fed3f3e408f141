import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from infergate_server.artifacts import DigestMismatch, digest_of, fetch, file_sha256


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.bin").write_bytes(b"alpha")
    (root / "sub" / "b.txt").write_text("beta")
    (root / "Z.txt").write_text("zulu")
    return root


def test_manifest_digest_matches_the_documented_shell_recipe(tmp_path: Path) -> None:
    d = _tree(tmp_path / "model")
    shell = subprocess.run(
        "(cd model && find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum",
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    assert digest_of(d) == shell


def test_fetch_local_file_verifies_and_places(tmp_path: Path) -> None:
    src = tmp_path / "src.onnx"
    src.write_bytes(b"model bytes")
    dest = tmp_path / "out" / "model.onnx"
    assert fetch(str(src), dest, file_sha256(src)) == file_sha256(src)
    assert dest.read_bytes() == b"model bytes"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.onnx"]  # no temp left behind


def test_fetch_pvc_directory_by_manifest_digest(tmp_path: Path) -> None:
    d = _tree(tmp_path / "pvcroot" / "models" / "m1")
    dest = tmp_path / "out" / "m1"
    fetch("pvc://models/m1", dest, digest_of(d), pvc_root=tmp_path / "pvcroot")
    assert digest_of(dest) == digest_of(d)


def test_tampered_file_is_refused_and_nothing_lands(tmp_path: Path) -> None:
    src = tmp_path / "src.onnx"
    src.write_bytes(b"model bytes")
    pinned = file_sha256(src)
    src.write_bytes(b"model bytez")  # one byte changed
    dest = tmp_path / "out" / "model.onnx"
    with pytest.raises(DigestMismatch, match=f"expected {pinned}"):
        fetch(str(src), dest, pinned)
    assert list(dest.parent.iterdir()) == []


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=str(root), **kw)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", root
    finally:
        srv.shutdown()
        srv.server_close()


def test_fetch_over_http(http_dir: tuple[str, Path], tmp_path: Path) -> None:
    url, root = http_dir
    (root / "m.onnx").write_bytes(b"\x00" * 5000)
    dest = tmp_path / "dl" / "m.onnx"
    fetch(f"{url}/m.onnx", dest, file_sha256(root / "m.onnx"))
    assert dest.stat().st_size == 5000


def test_cli_fetch_tampered_exits_nonzero_with_clear_message(
    http_dir: tuple[str, Path], tmp_path: Path
) -> None:
    url, root = http_dir
    (root / "m.onnx").write_bytes(b"good model")
    good = file_sha256(root / "m.onnx")
    (root / "m.onnx").write_bytes(b"good modem")
    dest = tmp_path / "dl" / "m.onnx"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "infergate_server.cli",
            "fetch",
            "--uri",
            f"{url}/m.onnx",
            "--sha256",
            good,
            "--dest",
            str(dest),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert f"expected {good}" in r.stderr
    assert "refusing" in r.stderr
    assert not dest.exists()


def test_unpinned_fetch_is_refused(tmp_path: Path) -> None:
    from infergate_server.artifacts import ArtifactError

    with pytest.raises(ArtifactError, match="no sha256"):
        fetch(str(tmp_path), tmp_path / "x", None)
