"""verify_cosign against signatures we make ourselves with throwaway P-256 keys."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from reconciler.errors import ConfigError, VerificationError
from reconciler.trust.cosign import (
    COSIGN_SIG_MEDIA_TYPE,
    SIGNATURE_ANNOTATION,
    CosignMatch,
    IdentityRule,
    PublicKey,
    SignatureLayer,
    manifest_digest,
    verify_cosign,
)

REPO = "registry.example.com:5000/cos/system"
DIGEST = manifest_digest(b'{"schemaVersion":2}')
OTHER_DIGEST = manifest_digest(b"something else")


def payload(reference: str = REPO, digest: str = DIGEST, optional: object = None,
            **critical_extra: object) -> bytes:
    doc = {"critical": {"identity": {"docker-reference": reference},
                        "image": {"docker-manifest-digest": digest},
                        "type": "cosign container image signature", **critical_extra},
           "optional": optional}
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def new_key(label: str) -> tuple[ec.EllipticCurvePrivateKey, PublicKey]:
    private = ec.generate_private_key(ec.SECP256R1())
    return private, PublicKey(label=label, key=private.public_key())


def sign(private: ec.EllipticCurvePrivateKey, body: bytes,
         media_type: str = COSIGN_SIG_MEDIA_TYPE) -> SignatureLayer:
    der = private.sign(body, ec.ECDSA(hashes.SHA256()))
    return SignatureLayer(media_type, body, {SIGNATURE_ANNOTATION: base64.b64encode(der).decode()})


def verify(layers: list[SignatureLayer], keys: list[PublicKey],
           identity: IdentityRule | None = None) -> CosignMatch:
    return verify_cosign(layers, manifest_digest=DIGEST, keys=keys,
                         identity=identity or IdentityRule(REPO))


def rejection(layers: list[SignatureLayer], keys: list[PublicKey],
              identity: IdentityRule | None = None) -> str:
    with pytest.raises(VerificationError) as caught:
        verify(layers, keys, identity)
    assert caught.value.hint
    return caught.value.message


def test_sign_and_verify_round_trip() -> None:
    """A payload signed with a fresh P-256 key verifies and reports key, identity and digest."""
    private, public = new_key("k1.pub")
    assert verify([sign(private, payload())], [public]) == CosignMatch("k1.pub", REPO, DIGEST)


def test_key_rotation_second_key_signs() -> None:
    """With two keys configured, a signature by the second one is accepted and attributed to it."""
    _, old = new_key("old.pub")
    private, new = new_key("new.pub")
    assert verify([sign(private, payload())], [old, new]).key == "new.pub"


def test_tampered_payload_byte_rejected() -> None:
    """Changing one payload byte after signing makes every key fail."""
    private, public = new_key("k.pub")
    layer = sign(private, payload())
    tampered = bytearray(layer.payload)
    tampered[-3] ^= 0x01
    message = rejection([SignatureLayer(layer.media_type, bytes(tampered), layer.annotations)],
                        [public])
    assert "signature 1: no configured key verifies it (tried k.pub)" in message


def test_reserialised_payload_rejected() -> None:
    """The same JSON with other whitespace does not verify: the signature covers raw bytes only."""
    private, public = new_key("k.pub")
    layer = sign(private, payload())
    pretty = json.dumps(json.loads(layer.payload), indent=2).encode()
    assert json.loads(pretty) == json.loads(layer.payload)
    message = rejection([SignatureLayer(layer.media_type, pretty, layer.annotations)], [public])
    assert "no configured key verifies it" in message


def test_signature_base64_with_line_breaks_accepted() -> None:
    """CR/LF inside the base64 signature are skipped, as Go's decoder does."""
    private, public = new_key("k.pub")
    layer = sign(private, payload())
    text = layer.annotations[SIGNATURE_ANNOTATION]
    wrapped = text[:20] + "\r\n" + text[20:40] + "\n" + text[40:]
    assert verify([SignatureLayer(layer.media_type, layer.payload,
                                  {SIGNATURE_ANNOTATION: wrapped})], [public]).key == "k.pub"


@pytest.mark.parametrize("annotations", [{}, {SIGNATURE_ANNOTATION: "not base64!"}])
def test_missing_or_bad_signature_annotation_rejected(annotations: dict[str, str]) -> None:
    """A cosign layer without a decodable signature annotation is rejected, not crashed on."""
    _, public = new_key("k.pub")
    message = rejection([SignatureLayer(COSIGN_SIG_MEDIA_TYPE, payload(), annotations)], [public])
    assert "signature 1:" in message and SIGNATURE_ANNOTATION in message


def test_digest_mismatch_names_both_digests() -> None:
    """A signature over another manifest says which digest it signs and which was expected."""
    private, public = new_key("k.pub")
    message = rejection([sign(private, payload(digest=OTHER_DIGEST))], [public])
    assert f"signature 1: signs {OTHER_DIGEST}, not {DIGEST}" in message


def test_wrong_type_rejected() -> None:
    """A verified payload whose critical.type is not a cosign signature is rejected."""
    private, public = new_key("k.pub")
    body = payload().replace(b"cosign container image signature", b"atomic container signature")
    assert "critical.type" in rejection([sign(private, body)], [public])


@pytest.mark.parametrize("body", [
    payload(extra="x"),
    payload().replace(b'"docker-manifest-digest"', b'"x":1,"docker-manifest-digest"'),
    payload().replace(b'"docker-reference"', b'"x":1,"docker-reference"'),
    payload().replace(b',"optional":null', b',"optional":null,"x":1'),
    payload().replace(b',"optional":null', b""),
    payload(optional="creator"),
    payload(optional={"timestamp": 1.5}),
    payload().replace(b'{"critical"', b'{"critical":{},"critical"'),
    b"not json",
], ids=["critical", "image", "identity", "top", "no-optional", "optional-string",
        "timestamp-float", "duplicate-key", "not-json"])
def test_malformed_payload_rejected(body: bytes) -> None:
    """Unknown or duplicate keys and wrong types are rejected even with a valid signature."""
    private, public = new_key("k.pub")
    assert "payload is invalid" in rejection([sign(private, body)], [public])


@pytest.mark.parametrize("optional", [None, {}, {"creator": "containers/image 5.21.2-dev",
                                                 "timestamp": 1657296609, "custom": "x"}])
def test_optional_null_or_object_accepted(optional: object) -> None:
    """`optional` may be null or an object with creator, integer timestamp and annotations."""
    private, public = new_key("k.pub")
    assert verify([sign(private, payload(optional=optional))], [public]).digest == DIGEST


def test_identity_with_tag_accepted_in_repository_mode() -> None:
    """A "host:port/repo:tag" identity matches the repository "host:port/repo"."""
    private, public = new_key("k.pub")
    match = verify([sign(private, payload(reference=f"{REPO}:v1.2"))], [public])
    assert match.identity == f"{REPO}:v1.2"


def test_identity_other_repository_rejected() -> None:
    """A signature for another repository on the same registry is rejected, naming both."""
    private, public = new_key("k.pub")
    message = rejection([sign(private, payload(reference=f"{REPO}-evil"))], [public])
    assert f"signature 1: identity {REPO}-evil does not match repository {REPO}" in message


def test_exact_mode_needs_the_exact_tag() -> None:
    """Exact mode accepts only the same repo:tag, never a repository-only identity."""
    private, public = new_key("k.pub")
    rule = IdentityRule(REPO, exact=f"{REPO}:v1")
    assert verify([sign(private, payload(reference=f"{REPO}:v1"))], [public], rule)
    assert "does not match exact" in rejection(
        [sign(private, payload(reference=f"{REPO}:v2"))], [public], rule)
    assert "does not match exact" in rejection([sign(private, payload())], [public], rule)


def test_any_good_signature_is_enough_and_failures_are_listed() -> None:
    """The first acceptable layer wins; when none is, the message lists every layer's reason."""
    private, public = new_key("k.pub")
    stranger, _ = new_key("x.pub")
    bad = [sign(stranger, payload()), sign(private, payload(digest=OTHER_DIGEST)),
           SignatureLayer("text/plain", b"{{{", {})]
    assert verify([*bad, sign(private, payload())], [public]).key == "k.pub"
    message = rejection(bad, [public])
    assert "signature 1: no configured key verifies it" in message
    assert "signature 2: signs" in message
    assert "signature 3: ignored" in message


def test_other_media_types_are_never_verified() -> None:
    """A correctly signed payload under another media type is ignored, not accepted."""
    private, public = new_key("k.pub")
    message = rejection([sign(private, payload(), media_type="text/plain")], [public])
    assert message.startswith(f"no cosign signature found for {DIGEST}")


def test_no_signatures_at_all() -> None:
    """An image without signatures is rejected with "no cosign signature found"."""
    _, public = new_key("k.pub")
    assert rejection([], [public]) == f"no cosign signature found for {DIGEST}"


def test_no_keys_is_a_config_error() -> None:
    """Verifying with an empty key list is a configuration error, not a silent pass."""
    private, _ = new_key("k.pub")
    with pytest.raises(ConfigError):
        verify([sign(private, payload())], [])


@pytest.mark.parametrize("rule", [IdentityRule("Upper/Case"), IdentityRule(f"{REPO}:tag"),
                                  IdentityRule(REPO, exact="bad ref")])
def test_unusable_identity_rule_is_a_config_error(rule: IdentityRule) -> None:
    """An identity rule that is not a valid repository (or exact reference) is a ConfigError."""
    private, public = new_key("k.pub")
    with pytest.raises(ConfigError):
        verify([sign(private, payload())], [public], rule)


def test_malformed_der_signature_rejected() -> None:
    """A garbage DER blob in the annotation fails verification instead of raising."""
    _, public = new_key("k.pub")
    layer = SignatureLayer(COSIGN_SIG_MEDIA_TYPE, payload(),
                           {SIGNATURE_ANNOTATION: base64.b64encode(b"\x30\x02\x00\x00").decode()})
    assert "no configured key verifies it" in rejection([layer], [public])


def test_manifest_digest_is_sha256_of_exact_bytes() -> None:
    """manifest_digest hashes the bytes as given, whitespace included."""
    assert manifest_digest(b"") == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert manifest_digest(b"{}") != manifest_digest(b"{ }")
