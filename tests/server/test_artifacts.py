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


def test_pvc_path_cannot_leave_its_claim(tmp_path: Path) -> None:
    from infergate_server.artifacts import ArtifactError

    root = tmp_path / "pvcroot"
    (root / "models").mkdir(parents=True)
    secret = root / "other-claim" / "secret.bin"
    secret.parent.mkdir()
    secret.write_bytes(b"another tenant's weights")
    for uri in ("pvc://models/../other-claim/secret.bin", "pvc://../pvcroot/other-claim/secret.bin"):
        with pytest.raises(ArtifactError):
            fetch(uri, tmp_path / "out" / "m.bin", file_sha256(secret), pvc_root=root)
    assert not (tmp_path / "out" / "m.bin").exists()


def test_digest_refuses_a_fifo_instead_of_hanging(tmp_path: Path) -> None:
    import os

    model = _tree(tmp_path / "model")
    os.mkfifo(model / "sub" / "pipe")
    r = subprocess.run(
        [sys.executable, "-m", "infergate_server.cli", "digest", str(model)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert r.returncode != 0
    assert "regular files" in r.stderr


def test_stale_staging_folders_from_a_killed_fetch_are_removed(tmp_path: Path) -> None:
    src = tmp_path / "src.onnx"
    src.write_bytes(b"model bytes")
    out = tmp_path / "out"
    stale = out / ".model.onnx.abc123"  # what tempfile.mkdtemp left when the process was killed
    stale.mkdir(parents=True)
    (stale / "model.onnx").write_bytes(b"half a download")
    fetch(str(src), out / "model.onnx", file_sha256(src))
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx"]


def test_credentials_in_the_uri_reach_no_message_or_log(http_dir: tuple[str, Path], tmp_path: Path) -> None:
    url, _root = http_dir
    host = url.removeprefix("http://")
    uri = f"http://alice:pa55word@{host}/missing.onnx?X-Amz-Signature=s3cr3tsig&X-Amz-Credential=AKIAKEY"
    dest = str(tmp_path / "dl" / "m.onnx")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "infergate_server.cli",
            "fetch",
            "--uri",
            uri,
            "--sha256",
            "0" * 64,
            "--dest",
            dest,
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert "HTTP 404" in r.stderr
    for secret in ("pa55word", "alice", "s3cr3tsig", "AKIAKEY"):
        assert secret not in r.stderr + r.stdout


@pytest.fixture
def gzip_server() -> Iterator[tuple[str, bytes]]:
    import gzip

    plain = b"\x00" * (8 << 20)
    packed = gzip.compress(plain)

    class Gzipped(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")  # sent even though identity was asked for
            self.send_header("Content-Length", str(len(packed)))
            self.end_headers()
            self.wfile.write(packed)

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gzipped)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/m.onnx", plain
    finally:
        srv.shutdown()
        srv.server_close()


def test_http_fetch_stores_the_bytes_sent_and_never_inflates_them(
    gzip_server: tuple[str, bytes], tmp_path: Path
) -> None:
    import hashlib

    url, plain = gzip_server
    dest = tmp_path / "dl" / "m.onnx"
    # Pinned to the inflated bytes: a fetch that decoded the body (8 MiB from 8 KiB) would accept it.
    with pytest.raises(DigestMismatch):
        fetch(url, dest, hashlib.sha256(plain).hexdigest())
    assert not dest.exists()


def test_http_fetch_stops_at_the_size_limit(http_dir: tuple[str, Path], tmp_path: Path) -> None:
    from infergate_server.artifacts import ArtifactError

    url, root = http_dir
    (root / "big.onnx").write_bytes(b"\x01" * (3 << 20))
    dest = tmp_path / "dl" / "big.onnx"
    with pytest.raises(ArtifactError, match="download limit"):
        fetch(f"{url}/big.onnx", dest, file_sha256(root / "big.onnx"), max_bytes=1 << 20)
    assert list(dest.parent.iterdir()) == []


def test_an_https_download_is_never_redirected_to_plain_http(
    http_dir: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ssl

    from infergate_server.artifacts import ArtifactError

    from .test_tls import _self_signed

    url, root = http_dir
    (root / "m.onnx").write_bytes(b"weights")
    crt, key = _self_signed(tmp_path)

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", f"{url}/m.onnx")  # the same file, over plain http
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(crt, key)
    srv.socket = context.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    monkeypatch.setenv("SSL_CERT_FILE", str(crt))  # httpx trusts the test's certificate
    try:
        with pytest.raises(ArtifactError, match="refusing a redirect from https to http"):
            fetch(
                f"https://127.0.0.1:{srv.server_address[1]}/m.onnx",
                tmp_path / "dl" / "m.onnx",
                file_sha256(root / "m.onnx"),
            )
    finally:
        srv.shutdown()
        srv.server_close()
    assert not (tmp_path / "dl" / "m.onnx").exists()
