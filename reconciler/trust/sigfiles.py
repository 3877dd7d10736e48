"""Read cosign signatures from where they are stored: a `dir:` image or a `.sig` manifest.

Policy for damaged input (any one good signature is enough, so one bad entry must not hide a
good one; a dropped entry can never be accepted, so dropping fails closed):
* `dir:` store: GPG signatures (raw OpenPGP, or `\\x00simple-signing\\n`) are skipped silently;
  a sigstore file whose JSON is malformed, or an unknown `\\x00<format>\\n`, is skipped with a
  logged warning. Unreadable files raise VerificationError.
* `.sig` manifest: a layer whose descriptor is malformed, too large, or whose blob does not
  match its descriptor's digest and size is dropped with a logged warning. A manifest that is
  not an OCI / Docker v2 image manifest raises VerificationError.
Numbers in verify_cosign's messages count the returned signatures, not the files.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reconciler import logs
from reconciler.errors import VerificationError
from reconciler.trust._json import StrictJSONError, exact_object, loads, string_member
from reconciler.trust.cosign import (
    CosignMatch,
    IdentityRule,
    PublicKey,
    SignatureLayer,
    manifest_digest,
    verify_cosign,
)

log = logs.get_logger(__name__)

SIGSTORE_PREFIX = b"\x00sigstore-json\n"
SIMPLE_SIGNING_PREFIX = b"\x00simple-signing\n"
MAX_SIGNATURE_BYTES = 4 * 1024 * 1024  # containers/image's limit for one signature body
_SHA256_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_MANIFEST_TYPES = (
    None,
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


def sig_tag(digest: str) -> str:
    """The tag cosign stores signatures under: "sha256:abc" -> "sha256-abc.sig"."""
    algorithm, colon, encoded = digest.partition(":")
    if not colon or not re.fullmatch(r"[a-z0-9]+", algorithm) or not re.fullmatch(
        r"[0-9a-f]+", encoded
    ):
        raise ValueError(f"{digest!r} is not a manifest digest like sha256:<hex>")
    return f"{algorithm}-{encoded}.sig"


def _sigstore_layer(body: bytes) -> SignatureLayer:
    """The layer in a sigstore-json body; StrictJSONError / ValueError if malformed."""
    doc = exact_object(loads(body), ("mimeType", "payload", "annotations"), "signature")
    annotations = doc["annotations"]
    if not isinstance(annotations, dict) or not all(
        isinstance(v, str) for v in annotations.values()
    ):
        raise StrictJSONError("signature.annotations is not an object of strings")
    payload = string_member(doc, "payload", "signature").replace("\r", "").replace("\n", "")
    return SignatureLayer(
        media_type=string_member(doc, "mimeType", "signature"),
        payload=base64.b64decode(payload, validate=True),
        annotations=dict(annotations),
    )


def parse_signature_blob(blob: bytes, source: str = "signature") -> SignatureLayer | None:
    """The sigstore signature in a containers/image signature blob; None for GPG or damage."""
    if not blob.startswith(b"\x00") or blob.startswith(SIMPLE_SIGNING_PREFIX):
        return None
    if not blob.startswith(SIGSTORE_PREFIX):
        log.warning("skipping signature of unknown format", source=source,
                    format=blob[1:33].split(b"\n", 1)[0].decode("ascii", "replace"))
        return None
    try:
        return _sigstore_layer(blob[len(SIGSTORE_PREFIX):])
    except ValueError as err:  # StrictJSONError and binascii.Error are ValueErrors
        log.warning("skipping malformed sigstore signature", source=source, error=str(err))
        return None


def read_dir_signatures(directory: Path) -> list[SignatureLayer]:
    """The sigstore signatures `signature-1`, `signature-2`, ... of a `dir:` image, in order."""
    layers: list[SignatureLayer] = []
    for number in range(1, 1_000_000):
        path = directory / f"signature-{number}"
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            break
        except OSError as err:
            raise VerificationError(f"cannot read signature {path}: {err.strerror or err}",
                                    hint="check the file's permissions") from err
        layer = parse_signature_blob(blob, source=str(path))
        if layer is not None:
            layers.append(layer)
    return layers


def _descriptor(value: Any) -> tuple[str, str, int, dict[str, str]]:
    """(mediaType, digest, size, annotations) of a layer descriptor; ValueError if malformed."""
    if not isinstance(value, dict):
        raise ValueError("descriptor is not an object")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    annotations = value.get("annotations") or {}
    if not isinstance(media_type, str):
        raise ValueError("mediaType is not a string")
    if not isinstance(digest, str) or not _SHA256_DIGEST.fullmatch(digest):
        raise ValueError(f"digest {digest!r} is not sha256:<64 hex>")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError("size is not a non-negative integer")
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise ValueError("annotations is not an object of strings")
    return media_type, digest, size, annotations


def layers_from_sig_manifest(manifest: bytes,
                             read_blob: Callable[[str], bytes]) -> list[SignatureLayer]:
    """One SignatureLayer per layer of a cosign `.sig` manifest, blobs fetched by `read_blob`
    (called only with a validated "sha256:<hex>") and checked against their descriptors."""
    try:
        doc = loads(manifest)
    except StrictJSONError as err:
        raise VerificationError(f"cosign signature manifest is not valid JSON: {err}",
                                hint="the registry returned a damaged manifest") from err
    if not isinstance(doc, dict) or doc.get("schemaVersion") != 2 \
            or doc.get("mediaType") not in _MANIFEST_TYPES \
            or not isinstance(doc.get("layers", []), list):
        raise VerificationError("cosign signature object is not an OCI image manifest",
                                hint="the .sig tag should hold a manifest written by cosign")
    layers: list[SignatureLayer] = []
    for index, value in enumerate(doc.get("layers", []), start=1):
        try:
            media_type, digest, size, annotations = _descriptor(value)
        except ValueError as err:
            log.warning("dropping signature layer", layer=index, reason=str(err))
            continue
        if size > MAX_SIGNATURE_BYTES:
            log.warning("dropping signature layer", layer=index, digest=digest,
                        reason=f"declared size {size} exceeds {MAX_SIGNATURE_BYTES}")
            continue
        blob = read_blob(digest)
        if len(blob) != size or manifest_digest(blob) != digest:
            log.warning("dropping signature layer", layer=index, digest=digest,
                        reason="blob does not match its descriptor's digest and size")
            continue
        layers.append(SignatureLayer(media_type, blob, annotations))
    return layers


def verify_dir_image(directory: Path, keys: Sequence[PublicKey],
                     identity: IdentityRule) -> CosignMatch:
    """Verify the cosign signatures of a `dir:` image against its own manifest.json."""
    manifest_path = directory / "manifest.json"
    try:
        manifest = manifest_path.read_bytes()
    except FileNotFoundError as err:
        raise VerificationError(
            f"manifest missing: {manifest_path} does not exist, so there is no digest to verify",
            hint="copy the whole image (skopeo copy ... dir:DIR) before verifying it",
        ) from err
    except OSError as err:
        raise VerificationError(f"cannot read {manifest_path}: {err.strerror or err}",
                                hint="check the file's permissions") from err
    return verify_cosign(read_dir_signatures(directory), manifest_digest=manifest_digest(manifest),
                         keys=keys, identity=identity)
