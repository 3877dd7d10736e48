"""Loading cosign public keys: P-256 PEM only, everything else is a ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from reconciler.errors import ConfigError
from reconciler.trust.cosign import load_public_keys


def write_public(path: Path, private: PrivateKeyTypes) -> Path:
    path.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def test_loads_p256_keys_in_order(tmp_path: Path) -> None:
    """P-256 PEM keys load in the given order, labelled with their path."""
    paths = [write_public(tmp_path / f"k{i}.pub", ec.generate_private_key(ec.SECP256R1()))
             for i in range(2)]
    keys = load_public_keys(paths)
    assert [k.label for k in keys] == [str(p) for p in paths]
    assert all(isinstance(k.key.curve, ec.SECP256R1) for k in keys)


def test_rejects_rsa_key(tmp_path: Path) -> None:
    """An RSA public key is refused with a ConfigError naming the file."""
    path = write_public(tmp_path / "rsa.pub", rsa.generate_private_key(65537, 2048))
    with pytest.raises(ConfigError, match=r"rsa\.pub holds an RSA key") as caught:
        load_public_keys([path])
    assert caught.value.hint


@pytest.mark.parametrize("private", [ec.generate_private_key(ec.SECP384R1()),
                                     ed25519.Ed25519PrivateKey.generate()], ids=["p384", "ed25519"])
def test_rejects_other_curves(tmp_path: Path, private: PrivateKeyTypes) -> None:
    """Keys other than ECDSA P-256 are refused."""
    with pytest.raises(ConfigError, match="only"):
        load_public_keys([write_public(tmp_path / "other.pub", private)])


def test_rejects_garbage_file(tmp_path: Path) -> None:
    """A file that is not PEM is a ConfigError, not a crash."""
    path = tmp_path / "garbage.pub"
    path.write_bytes(b"-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n")
    with pytest.raises(ConfigError, match="not a PEM public key"):
        load_public_keys([path])


def test_rejects_missing_file(tmp_path: Path) -> None:
    """A key path that does not exist is a ConfigError saying it cannot be read."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_public_keys([tmp_path / "absent.pub"])
