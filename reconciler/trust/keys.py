"""Load trusted cosign public keys (PEM, ECDSA P-256) and check signatures made with them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from reconciler.errors import ConfigError

_KEY_HINT = (
    "give the cosign.pub written by 'cosign generate-key-pair' "
    "(PEM '-----BEGIN PUBLIC KEY-----', ECDSA P-256)"
)


@dataclass(frozen=True)
class PublicKey:
    """A trusted key and the label (usually its file path) shown to users."""

    label: str
    key: ec.EllipticCurvePublicKey

    def verifies(self, der_signature: bytes, payload: bytes) -> bool:
        """True if `der_signature` (ASN.1 DER ECDSA) signs `payload` under SHA-256."""
        try:
            self.key.verify(der_signature, payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


def _kind(key: PublicKeyTypes) -> str:
    kinds = ((rsa.RSAPublicKey, "an RSA"), (ed25519.Ed25519PublicKey, "an Ed25519"),
             (ed448.Ed448PublicKey, "an Ed448"), (dsa.DSAPublicKey, "a DSA"))
    return next((name for cls, name in kinds if isinstance(key, cls)), "a non-ECDSA")


def load_public_key(path: Path) -> PublicKey:
    """The P-256 public key in the PEM file `path`; ConfigError if unreadable or another kind."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(
            f"cannot read cosign public key {path}: {err.strerror or err}", hint=_KEY_HINT
        ) from err
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise ConfigError(f"{path} is not a PEM public key", hint=_KEY_HINT) from err
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError(
            f"{path} holds {_kind(key)} key; "
            "only ECDSA P-256 keys are supported",
            hint=_KEY_HINT,
        )
    if not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError(
            f"{path} is an ECDSA key on curve {key.curve.name}; only P-256 is supported",
            hint=_KEY_HINT,
        )
    return PublicKey(label=str(path), key=key)


def load_public_keys(paths: Sequence[Path]) -> list[PublicKey]:
    """Every key in `paths`, in order; the first bad file raises ConfigError."""
    return [load_public_key(Path(path)) for path in paths]
