"""s3:// fetches against a local S3-compatible endpoint (moto's server on 127.0.0.1), through boto3."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from infergate_server.artifacts import ArtifactError, DigestMismatch, digest_of, fetch, file_sha256

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    server_mod = pytest.importorskip("moto.server")
    import boto3

    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        client = boto3.client("s3")
        client.create_bucket(Bucket="models")
        yield client
    finally:
        server.stop()


def test_fetch_an_s3_object(s3: object, tmp_path: Path) -> None:
    data = b"onnx bytes" * 1000
    s3.put_object(Bucket="models", Key="m/3/model.onnx", Body=data)  # type: ignore[attr-defined]
    src = tmp_path / "ref"
    src.write_bytes(data)
    dest = tmp_path / "out" / "model.onnx"
    fetch("s3://models/m/3/model.onnx", dest, file_sha256(src))
    assert dest.read_bytes() == data


def test_fetch_an_s3_prefix_as_a_directory(s3: object, tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    (ref / "sub").mkdir(parents=True)
    for rel, body in (("config.json", b"{}"), ("sub/weights.bin", b"\x00\x01" * 500)):
        (ref / rel).write_bytes(body)
        s3.put_object(Bucket="models", Key=f"hf/1/{rel}", Body=body)  # type: ignore[attr-defined]
    dest = tmp_path / "out" / "model"
    fetch("s3://models/hf/1/", dest, digest_of(ref))
    assert digest_of(dest) == digest_of(ref)


def test_tampered_s3_object_is_refused(s3: object, tmp_path: Path) -> None:
    s3.put_object(Bucket="models", Key="x.onnx", Body=b"tampered")  # type: ignore[attr-defined]
    dest = tmp_path / "out" / "x.onnx"
    with pytest.raises(DigestMismatch):
        fetch("s3://models/x.onnx", dest, "0" * 64)
    assert not dest.exists()
    with pytest.raises(ArtifactError, match=r"s3://models/missing\.onnx"):
        fetch("s3://models/missing.onnx", dest, "0" * 64)


@pytest.mark.parametrize("shape", ["absolute", "empty-segment", "dot-segment"])
def test_an_object_key_cannot_write_outside_the_staging_folder(
    s3: object, tmp_path: Path, shape: str
) -> None:
    outside = tmp_path / "elsewhere" / "planted.txt"
    outside.parent.mkdir()
    rest = {
        "absolute": str(outside),  # "hf/1/" + "/tmp/.../planted.txt": target / rel is absolute
        "empty-segment": "sub//planted.txt",
        "dot-segment": "sub/./planted.txt",
    }[shape]
    s3.put_object(Bucket="models", Key="hf/1/config.json", Body=b"{}")  # type: ignore[attr-defined]
    s3.put_object(Bucket="models", Key=f"hf/1/{rest}", Body=b"planted")  # type: ignore[attr-defined]
    dest = tmp_path / "out" / "model"
    with pytest.raises(ArtifactError, match="not a plain relative path"):
        fetch("s3://models/hf/1/", dest, "0" * 64)
    assert not outside.exists()
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no staging folder left either
