"""Reading cosign signatures from `dir:` images and from cosign `.sig` OCI manifests."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from reconciler.errors import VerificationError
from reconciler.trust.cosign import (
    COSIGN_SIG_MEDIA_TYPE,
    SIGNATURE_ANNOTATION,
    IdentityRule,
    PublicKey,
    SignatureLayer,
    manifest_digest,
    verify_cosign,
)
from reconciler.trust.sigfiles import (
    SIGSTORE_PREFIX,
    layers_from_sig_manifest,
    read_dir_signatures,
    sig_tag,
    verify_dir_image,
)

REPO = "localhost:5000/cos/system"
MANIFEST = b'{"schemaVersion":2,"layers":[]}\n'
DIGEST = manifest_digest(MANIFEST)


def signed_payload(private: ec.EllipticCurvePrivateKey, reference: str = REPO,
                   ) -> tuple[bytes, str]:
    body = json.dumps({"critical": {"identity": {"docker-reference": reference},
                                    "image": {"docker-manifest-digest": DIGEST},
                                    "type": "cosign container image signature"},
                       "optional": None}, separators=(",", ":")).encode()
    der = private.sign(body, ec.ECDSA(hashes.SHA256()))
    return body, base64.b64encode(der).decode()


def sigstore_file(body: bytes, signature: str, mime: str = COSIGN_SIG_MEDIA_TYPE) -> bytes:
    doc = {"mimeType": mime, "payload": base64.b64encode(body).decode(),
           "annotations": {SIGNATURE_ANNOTATION: signature}}
    return SIGSTORE_PREFIX + json.dumps(doc).encode()


def descriptor(blob: bytes, annotations: dict[str, str]) -> dict[str, object]:
    return {"mediaType": COSIGN_SIG_MEDIA_TYPE, "size": len(blob),
            "digest": "sha256:" + hashlib.sha256(blob).hexdigest(), "annotations": annotations}


def sig_manifest(*layers: dict[str, object]) -> bytes:
    oci = "application/vnd.oci.image.manifest.v1+json"
    return json.dumps({"schemaVersion": 2, "mediaType": oci,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "size": 2, "digest": manifest_digest(b"{}")},
                       "layers": list(layers)}).encode()


@pytest.fixture
def key() -> tuple[ec.EllipticCurvePrivateKey, PublicKey]:
    private = ec.generate_private_key(ec.SECP256R1())
    return private, PublicKey("test.pub", private.public_key())


def test_sig_tag() -> None:
    """A manifest digest maps to cosign's signature tag."""
    assert sig_tag("sha256:abc123") == "sha256-abc123.sig"
    with pytest.raises(ValueError):
        sig_tag("latest")


def test_sig_manifest_round_trip(key: tuple[ec.EllipticCurvePrivateKey, PublicKey]) -> None:
    """A hand-built two-layer `.sig` manifest yields two layers, and either one verifies."""
    private, public = key
    other = ec.generate_private_key(ec.SECP256R1())
    body1, sig1 = signed_payload(other)
    body2, sig2 = signed_payload(private)
    digests = [manifest_digest(body1), manifest_digest(body2)]  # equal: same payload bytes
    blobs = dict(zip(digests, (body1, body2), strict=True))
    manifest = sig_manifest(descriptor(body1, {SIGNATURE_ANNOTATION: sig1}),
                            descriptor(body2, {SIGNATURE_ANNOTATION: sig2, "x": "y"}))
    requested: list[str] = []

    def read_blob(digest: str) -> bytes:
        requested.append(digest)
        return blobs[digest]

    layers = layers_from_sig_manifest(manifest, read_blob)
    assert layers == [SignatureLayer(COSIGN_SIG_MEDIA_TYPE, body1, {SIGNATURE_ANNOTATION: sig1}),
                      SignatureLayer(COSIGN_SIG_MEDIA_TYPE, body2,
                                     {SIGNATURE_ANNOTATION: sig2, "x": "y"})]
    assert requested == digests
    match = verify_cosign(layers, manifest_digest=DIGEST, keys=[public],
                          identity=IdentityRule(REPO))
    assert match.key == "test.pub"


def test_sig_manifest_drops_blob_with_wrong_digest(
        key: tuple[ec.EllipticCurvePrivateKey, PublicKey]) -> None:
    """A blob that does not hash to its descriptor's digest is dropped, the others kept."""
    private, _ = key
    body, sig = signed_payload(private)
    good, bad = descriptor(body, {SIGNATURE_ANNOTATION: sig}), descriptor(body + b" ", {})
    layers = layers_from_sig_manifest(sig_manifest(bad, good), lambda digest: body)
    assert [layer.payload for layer in layers] == [body]


def test_sig_manifest_drops_malformed_descriptor_without_fetching() -> None:
    """A descriptor with an unsafe digest is dropped before read_blob is ever called."""
    manifest = sig_manifest({"mediaType": COSIGN_SIG_MEDIA_TYPE, "size": 1,
                             "digest": "sha256:../../etc/passwd"})

    def read_blob(digest: str) -> bytes:
        raise AssertionError(f"fetched {digest}")

    assert layers_from_sig_manifest(manifest, read_blob) == []


@pytest.mark.parametrize("manifest", [b"not json", b"[]", b'{"schemaVersion":1}',
                                      b'{"schemaVersion":2,"mediaType":"application/'
                                      b'vnd.oci.image.index.v1+json"}'])
def test_sig_manifest_not_a_manifest(manifest: bytes) -> None:
    """Something that is not an image manifest raises VerificationError."""
    with pytest.raises(VerificationError):
        layers_from_sig_manifest(manifest, lambda digest: b"")


def test_dir_signatures_skip_gpg_and_damaged(
        tmp_path: Path, key: tuple[ec.EllipticCurvePrivateKey, PublicKey]) -> None:
    """GPG, simple-signing, unknown-format and malformed sigstore files are skipped; order kept."""
    private, _ = key
    body, sig = signed_payload(private)
    files = [b"\xa3\x01gpg", b"\x00simple-signing\n\xa3", sigstore_file(body, sig),
             SIGSTORE_PREFIX + b"{not json", b"\x00future-format\n{}",
             sigstore_file(body, sig, mime="text/plain")]
    for number, blob in enumerate(files, start=1):
        (tmp_path / f"signature-{number}").write_bytes(blob)
    (tmp_path / "signature-8").write_bytes(sigstore_file(body, sig))  # after a gap: not read
    layers = read_dir_signatures(tmp_path)
    assert [layer.media_type for layer in layers] == [COSIGN_SIG_MEDIA_TYPE, "text/plain"]
    assert layers[0].payload == body
    assert layers[0].annotations == {SIGNATURE_ANNOTATION: sig}


def test_dir_sigstore_needs_exactly_three_members(tmp_path: Path) -> None:
    """A sigstore-json file with an extra member is treated as malformed and skipped."""
    doc = {"mimeType": COSIGN_SIG_MEDIA_TYPE, "payload": "", "annotations": {}, "extra": 1}
    (tmp_path / "signature-1").write_bytes(SIGSTORE_PREFIX + json.dumps(doc).encode())
    assert read_dir_signatures(tmp_path) == []


def test_verify_dir_image(tmp_path: Path,
                          key: tuple[ec.EllipticCurvePrivateKey, PublicKey]) -> None:
    """A dir: image verifies against the digest of its own manifest.json."""
    private, public = key
    (tmp_path / "manifest.json").write_bytes(MANIFEST)
    (tmp_path / "signature-1").write_bytes(sigstore_file(*signed_payload(private)))
    assert verify_dir_image(tmp_path, [public], IdentityRule(REPO)).digest == DIGEST
    (tmp_path / "manifest.json").write_bytes(MANIFEST + b" ")
    with pytest.raises(VerificationError, match="signs sha256:"):
        verify_dir_image(tmp_path, [public], IdentityRule(REPO))


def test_verify_dir_image_without_manifest(
        tmp_path: Path, key: tuple[ec.EllipticCurvePrivateKey, PublicKey]) -> None:
    """A dir: image without manifest.json is rejected as "manifest missing"."""
    with pytest.raises(VerificationError, match="manifest missing"):
        verify_dir_image(tmp_path, [key[1]], IdentityRule(REPO))
