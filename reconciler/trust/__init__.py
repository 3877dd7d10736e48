"""Image trust: verify cosign (sigstore, key-based) signatures in pure Python.

Public API: `reconciler.trust.cosign` (verifier, key loading, digests) and
`reconciler.trust.sigfiles` (reading signatures from `dir:` images and cosign `.sig` manifests).
"""

from __future__ import annotations

from reconciler.trust.cosign import (
    COSIGN_SIG_MEDIA_TYPE,
    SIGNATURE_ANNOTATION,
    CosignMatch,
    IdentityRule,
    PublicKey,
    SignatureLayer,
    load_public_keys,
    manifest_digest,
    verify_cosign,
)
from reconciler.trust.sigfiles import (
    layers_from_sig_manifest,
    read_dir_signatures,
    sig_tag,
    verify_dir_image,
)

__all__ = [
    "COSIGN_SIG_MEDIA_TYPE",
    "SIGNATURE_ANNOTATION",
    "CosignMatch",
    "IdentityRule",
    "PublicKey",
    "SignatureLayer",
    "layers_from_sig_manifest",
    "load_public_keys",
    "manifest_digest",
    "read_dir_signatures",
    "sig_tag",
    "verify_cosign",
    "verify_dir_image",
]
