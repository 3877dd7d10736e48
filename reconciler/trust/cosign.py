"""Verify cosign (sigstore, key-based) image signatures: one acceptable signature is enough.

A signature layer is acceptable when, checked in this order (a payload is never parsed before
its signature has been verified, and attachments of other media types are never parsed):
1. its media type is COSIGN_SIG_MEDIA_TYPE;
2. the base64 (Go-style: CR/LF skipped) ASN.1 DER ECDSA signature in SIGNATURE_ANNOTATION
   verifies over the *raw* payload bytes (P-256, SHA-256) with any configured key;
3. the payload is a strict cosign simple-signing document (see payload.py);
4. it signs exactly `manifest_digest`;
5. its docker-reference satisfies the IdentityRule (see identity.py).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from reconciler import logs
from reconciler.errors import ConfigError, VerificationError
from reconciler.trust.identity import IdentityRule, check_rule, identity_mismatch
from reconciler.trust.keys import PublicKey, load_public_keys
from reconciler.trust.payload import PayloadError, parse_payload

__all__ = [
    "COSIGN_SIG_MEDIA_TYPE",
    "SIGNATURE_ANNOTATION",
    "CosignMatch",
    "IdentityRule",
    "PublicKey",
    "SignatureLayer",
    "load_public_keys",
    "manifest_digest",
    "verify_cosign",
]

log = logs.get_logger(__name__)

COSIGN_SIG_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"

_Kind = Literal["format", "key", "payload", "digest", "identity"]

_HINTS: dict[_Kind, str] = {
    "format": "the signature attachment is malformed; re-sign the image with cosign",
    "key": "sign the image with the private key of one of the configured public keys, "
    "or add the signer's public key (check with: cosign verify --key KEY IMAGE@DIGEST)",
    "payload": "the signed payload is not a cosign container image signature; re-sign the image",
    "digest": "the signature was made for another manifest (the image was changed or re-pushed "
    "after signing); sign the exact digest: cosign sign --key KEY IMAGE@DIGEST",
    "identity": "the image was signed under another name; trust the signed repository, "
    "or re-sign the image under the name it is pulled by",
}
_NO_SIGNATURE_HINT = (
    "sign the image: cosign sign --key KEY IMAGE@DIGEST (cosign stores the signature under the "
    "tag sha256-<hex>.sig of the same repository)"
)


@dataclass(frozen=True)
class SignatureLayer:
    """One attached signature: a layer of a cosign `.sig` manifest or a sigstore `signature-N`."""

    media_type: str
    payload: bytes
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CosignMatch:
    """The signature that was accepted: which key verified it, what it signs."""

    key: str
    identity: str
    digest: str


class _Failure(NamedTuple):
    kind: _Kind
    reason: str


def manifest_digest(manifest_bytes: bytes) -> str:
    """The digest of a manifest exactly as stored: "sha256:" + hex sha256 of the bytes."""
    return "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()


def _decode_signature(text: str) -> bytes:
    """Standard padded base64, skipping CR and LF as Go's decoder does; ValueError otherwise."""
    return base64.b64decode(text.replace("\r", "").replace("\n", ""), validate=True)


def _check(layer: SignatureLayer, digest: str, keys: Sequence[PublicKey],
           identity: IdentityRule) -> CosignMatch | _Failure:
    encoded = layer.annotations.get(SIGNATURE_ANNOTATION)
    if encoded is None:
        return _Failure("format", f"has no {SIGNATURE_ANNOTATION} annotation")
    try:
        der = _decode_signature(encoded)
    except ValueError:
        return _Failure("format", f"its {SIGNATURE_ANNOTATION} annotation is not valid base64")
    key = next((k for k in keys if k.verifies(der, layer.payload)), None)
    if key is None:
        tried = ", ".join(k.label for k in keys)
        return _Failure("key", f"no configured key verifies it (tried {tried})")
    try:
        claims = parse_payload(layer.payload)
    except PayloadError as err:
        return _Failure("payload", f"verified by {key.label}, but its payload is invalid: {err}")
    if claims.manifest_digest != digest:
        return _Failure("digest", f"signs {claims.manifest_digest}, not {digest}")
    mismatch = identity_mismatch(identity, claims.docker_reference)
    if mismatch is not None:
        return _Failure("identity", mismatch)
    return CosignMatch(key=key.label, identity=claims.docker_reference, digest=digest)


def verify_cosign(signatures: Sequence[SignatureLayer], *, manifest_digest: str,
                  keys: Sequence[PublicKey], identity: IdentityRule) -> CosignMatch:
    """The first acceptable signature of `manifest_digest`, or VerificationError listing why
    each one failed (numbered from 1 in `signatures` order). ConfigError if `keys` is empty or
    the identity rule is not a valid reference."""
    if not keys:
        raise ConfigError("no cosign public key configured",
                          hint="configure at least one cosign public key (cosign.pub)")
    check_rule(identity)
    lines: list[str] = []
    kinds: list[_Kind] = []
    ignored: list[str] = []
    for number, layer in enumerate(signatures, start=1):
        if layer.media_type != COSIGN_SIG_MEDIA_TYPE:
            ignored.append(layer.media_type)
            lines.append(f"signature {number}: ignored, media type {layer.media_type!r} "
                         "is not a cosign signature")
            continue
        result = _check(layer, manifest_digest, keys, identity)
        if isinstance(result, CosignMatch):
            log.info("cosign signature accepted", signature=number, key=result.key,
                     identity=result.identity, digest=result.digest)
            return result
        log.debug("cosign signature rejected", signature=number, reason=result.reason)
        kinds.append(result.kind)
        lines.append(f"signature {number}: {result.reason}")
    if not kinds:
        other = f" (ignored attachments of other types: {', '.join(ignored)})" if ignored else ""
        raise VerificationError(f"no cosign signature found for {manifest_digest}{other}",
                                hint=_NO_SIGNATURE_HINT)
    raise VerificationError(
        f"no acceptable cosign signature for {manifest_digest}:\n"
        + "\n".join(f"  {line}" for line in lines),
        hint="; or ".join(_HINTS[kind] for kind in dict.fromkeys(kinds)),
    )
