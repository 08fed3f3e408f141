"""model-signing verification during fetch, with a key pair (Sigstore needs the network; same code path)."""

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from infergate_server.artifacts import ArtifactError, fetch, file_sha256
from infergate_server.config import SignatureConfig


@pytest.fixture
def signed_model(tmp_path: Path) -> tuple[Path, Path, Path]:
    import model_signing

    key = ec.generate_private_key(ec.SECP256R1())
    priv = tmp_path / "key.pem"
    pub = tmp_path / "key.pub"
    priv.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    model = tmp_path / "src" / "model.onnx"
    model.parent.mkdir()
    model.write_bytes(b"weights" * 100)
    bundle = tmp_path / "model.sig"
    model_signing.signing.Config().use_elliptic_key_signer(private_key=priv).sign(model, bundle)
    return model, bundle, pub


def test_fetch_accepts_a_valid_signature(signed_model: tuple[Path, Path, Path], tmp_path: Path) -> None:
    model, bundle, pub = signed_model
    sig = SignatureConfig(bundle_uri=str(bundle), public_key=str(pub))
    dest = tmp_path / "out" / "model.onnx"
    fetch(str(model), dest, file_sha256(model), signature=sig)
    assert dest.read_bytes() == model.read_bytes()


def test_fetch_refuses_a_signature_by_another_key(
    signed_model: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    model, bundle, _pub = signed_model
    other = tmp_path / "other.pub"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    dest = tmp_path / "out" / "model.onnx"
    with pytest.raises(ArtifactError, match="signature verification failed"):
        fetch(
            str(model),
            dest,
            file_sha256(model),
            signature=SignatureConfig(bundle_uri=str(bundle), public_key=str(other)),
        )
    assert not dest.exists()


def test_a_present_destination_is_still_signature_checked(
    signed_model: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    model, bundle, _pub = signed_model
    other = tmp_path / "other.pub"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    dest = tmp_path / "out" / "model.onnx"
    dest.parent.mkdir()
    dest.write_bytes(model.read_bytes())  # left by an earlier run: its digest matches
    with pytest.raises(ArtifactError, match="signature verification failed"):
        fetch(
            str(model),
            dest,
            file_sha256(model),
            signature=SignatureConfig(bundle_uri=str(bundle), public_key=str(other)),
        )
